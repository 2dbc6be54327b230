"""The CloudWatch agent's configuration: the host's logs, and memory, swap and disk metrics.

The agent reads files only, never the journal: the uWSGI emperor's log and bingo-host's own
live in the journal, so bingo-host-journal-export.timer copies them to files under
/var/log/bingo-host each minute (journalctl with a cursor file), and the agent ships those.

Log groups: /bingo-host/<app.name>/{nginx-access,nginx-error,uwsgi,bingo-host}, one stream per
instance, kept RETENTION_DAYS. The agent's metrics (its own names: mem_used_percent,
swap_used_percent, disk_used_percent) go to the BingoHost namespace too, the only one the instance
role may put into; the alarms watch the names `bingo-host metrics push` puts, with or without
the agent.
"""

from __future__ import annotations

import json

from . import layout

RETENTION_DAYS = 30
SERVICE = "amazon-cloudwatch-agent.service"


def log_group(cfg, name: str) -> str:
    return f"/bingo-host/{cfg.app.name}/{name}"


def config(cfg) -> dict:
    logs = (("nginx-access", "/var/log/nginx/access.log"), ("nginx-error", "/var/log/nginx/error.log"),
            ("uwsgi", f"{layout.LOG_DIR}/uwsgi.log"), ("bingo-host", f"{layout.LOG_DIR}/bingo-host.log"))
    disks = ["/"] + ([cfg.volume.mountpoint] if cfg.database.local else [])
    return {
        "agent": {"metrics_collection_interval": 60, "run_as_user": "root"},
        "metrics": {
            "namespace": layout.METRICS_NAMESPACE,
            "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
            "metrics_collected": {
                "mem": {"measurement": ["mem_used_percent"]},
                "swap": {"measurement": ["swap_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": disks, "drop_device": True},
            },
        },
        "logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": path, "log_group_name": log_group(cfg, name),
             "log_stream_name": "{instance_id}", "retention_in_days": RETENTION_DAYS}
            for name, path in logs
        ]}}},
    }


def render(cfg) -> str:
    return json.dumps(config(cfg), indent=2, sort_keys=True) + "\n"


def fetch_config_cmd() -> list[str]:
    """The agent's own way to take a JSON config: translate it, (re)start the agent."""
    return [layout.CLOUDWATCH_AGENT_CTL, "-a", "fetch-config", "-m", "ec2", "-s",
            "-c", f"file:{layout.CLOUDWATCH_AGENT_CONFIG}"]
