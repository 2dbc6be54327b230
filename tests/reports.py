"""A `status --json` report in which every section metrics read is present and every run
succeeded: metrics.metric_data makes every datum a config can make it send from it."""

HEALTHY_REPORT = {"verdict": "healthy", "memory": {"used_percent": 41.5}, "swap": {"used_percent": 0.0},
                  "storage": {"root": {"mountpoint": "/", "used_percent": 33.3},
                              "data_volume": {"mountpoint": "/var/lib/mysql", "used_percent": 12.0}},
                  "snapshot": {"ok": True, "age_hours": 3.5},
                  "backups": {"last_backup": {"ok": True, "age_hours": 20.0},
                              "last_verified_restore": {"ok": True, "age_hours": 400.2}}}
