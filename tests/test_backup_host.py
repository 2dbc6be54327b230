"""Logical backups, `restore --dump` and restore drills on the bootstrapped systemd test host:
the real MariaDB with the dump user bootstrap created, the units bootstrap installed, S3 on
moto (reached through AWS_ENDPOINT_URL_S3, as an operator's drop-in would set it)."""

from __future__ import annotations

import gzip
import json
import time
from types import SimpleNamespace

import boto3
import pytest

from tests.aws_servers import REGION
from tests.conftest import BIN, CONFIG, host_config

BUCKET = "bingo-backups-test"
PREFIX = "bingo-host/"
UNITS = ("bingo-host-backup.service", "bingo-host-restore-drill.service")


def dropin(unit: str) -> str:
    return f"/etc/systemd/system/{unit}.d/endpoints.conf"


@pytest.fixture(scope="module")
def backups(host_pool, moto_server):
    """The shared host with backups enabled (keep 2) against a moto bucket; put back after."""
    b = host_pool.bootstrapped()
    host = b.host
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": moto_server.url,
           "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1"}
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server.url,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    original = host.read_file(CONFIG)
    host.put_file(CONFIG, host_config(b.volume.device, backups={"enabled": True, "bucket": BUCKET,
                                                               "keep": 2}), mode=0o600)
    try:
        for unit in UNITS:
            host.put_file(dropin(unit), "[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in env.items()))
        boot = host.run([BIN, "bootstrap"], check=False, timeout=600)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        yield SimpleNamespace(host=host, s3=s3, env=env,
                              bingo=lambda *a: host.run([BIN, *a], env=env, check=False, timeout=600))
    finally:
        host.put_file(CONFIG, original, mode=0o600)
        host.run(["rm", "-rf", *[dropin(u).rsplit("/", 1)[0] for u in UNITS]])
        host.run([BIN, "bootstrap"], check=False, timeout=600)
        for key in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]:
            s3.delete_object(Bucket=BUCKET, Key=key)
        s3.delete_bucket(Bucket=BUCKET)


def app_sql(host, sql: str) -> str:
    """Run sql as the app's own database user; its tab-separated output."""
    password = host.read_file("/etc/bingo-host/db-password").strip()
    r = host.run(["mariadb", "-u", "bingoapp", "-N", "-B", "bingo", "-e", sql],
                 env={"MYSQL_PWD": password}, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def start(host, unit: str):
    r = host.run(["systemctl", "start", unit], check=False, timeout=600)
    journal = host.run(["journalctl", "-u", unit, "--no-pager", "-o", "cat"]).stdout
    return r.returncode, journal


def dumps(s3) -> list[str]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])]
    return sorted(k for k in keys if k.endswith(".sql.gz"))


def status(backups) -> dict:
    r = backups.bingo("status", "--json")
    return json.loads(r.stdout)


def test_bootstrap_installs_the_timers_and_a_dump_user_that_can_only_read_the_app_database(backups):
    host = backups.host
    for timer in ("bingo-host-backup.timer", "bingo-host-restore-drill.timer"):
        assert host.run(["systemctl", "is-enabled", timer], check=False).stdout.strip() == "enabled"
        assert host.run(["systemctl", "is-active", timer], check=False).stdout.strip() == "active"
    grants = host.run(["mariadb", "-N", "-B", "-e", "SHOW GRANTS FOR bingodump@localhost"]).stdout
    assert "GRANT SELECT, SHOW VIEW, TRIGGER ON `bingo`.* TO `bingodump`@`localhost`" in grants
    assert "RELOAD" not in grants and "ALL PRIVILEGES" not in grants
    assert host.run(["stat", "-c", "%a %U", "/etc/bingo-host/db-dump-password"]).stdout.split() == ["600", "root"]
    again = host.run([BIN, "bootstrap"], check=False, timeout=600)
    assert again.returncode == 0 and "already converged, nothing changed" in again.stdout, again.stdout


def test_rows_the_app_wrote_before_the_dump_are_back_after_restore(backups):
    host, s3 = backups.host, backups.s3
    app_sql(host, "CREATE TABLE IF NOT EXISTS games (id INT PRIMARY KEY, title TEXT); "
                  "CREATE TABLE IF NOT EXISTS tickets (id INT PRIMARY KEY, game INT, "
                  "FOREIGN KEY (game) REFERENCES games(id)); DELETE FROM tickets; DELETE FROM games; "
                  "INSERT INTO games VALUES (1, 'it''s a (test), ok;'), (2, 'line\\nbreak'); "
                  "INSERT INTO tickets VALUES (10, 1), (11, 2), (12, 2)")
    rc, journal = start(host, "bingo-host-backup.service")
    assert rc == 0, journal
    (key,) = dumps(s3)
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
    assert tags["bingo-host:managed"] == "true" and tags["bingo-host:database"] == "bingo"
    sidecar = json.loads(s3.get_object(Bucket=BUCKET, Key=key + ".json")["Body"].read())
    assert sidecar["tables"] == {"games": 2, "tickets": 3}
    sql = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).decode()
    assert "-- Dump completed" in sql.splitlines()[-1]
    for secret in ("db-dump-password", "db-password"):
        assert host.read_file(f"/etc/bingo-host/{secret}").strip() not in journal

    app_sql(host, "DELETE FROM tickets WHERE id = 12; UPDATE games SET title = 'changed'; "
                  "INSERT INTO games VALUES (3, 'after the dump')")
    r = backups.bingo("restore", "--dump", "latest")
    assert r.returncode == 0, r.stdout + r.stderr
    assert app_sql(host, "SELECT id, title FROM games ORDER BY id") == "1\tit's a (test), ok;\n2\tline\\nbreak\n"
    assert app_sql(host, "SELECT id FROM tickets ORDER BY id").split() == ["10", "11", "12"]
    # The foreign key moved with the tables: it checks against the restored games.
    bad = host.run(["mariadb", "bingo", "-e", "INSERT INTO tickets VALUES (13, 99)"], check=False)
    assert bad.returncode != 0 and "foreign key constraint fails" in bad.stderr
    schemas = host.run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"]).stdout.split()
    assert "bingo_restore" not in schemas and "bingo_replaced" in schemas
    assert host.run(["mariadb", "-N", "-B", "-e", "SELECT title FROM bingo_replaced.games WHERE id=3"]
                    ).stdout.strip() == "after the dump"


def _tampered(data: bytes, how: str) -> bytes:
    if how == "truncated gzip":
        return data[: len(data) // 2]
    if how == "corrupt gzip":
        middle = len(data) // 2
        return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:]
    sql = gzip.decompress(data)  # "truncated sql": a valid gzip of the dump's first half
    return gzip.compress(sql[: sql.index(b"INSERT INTO `tickets`") + 30])


@pytest.mark.parametrize("how", ["truncated gzip", "corrupt gzip", "truncated sql"])
def test_a_truncated_or_corrupt_dump_fails_and_leaves_the_live_database_untouched(backups, how):
    host, s3 = backups.host, backups.s3
    key = dumps(s3)[-1]
    bad_key = f"{PREFIX}manual/bad-{how.replace(' ', '-')}.sql.gz"
    s3.put_object(Bucket=BUCKET, Key=bad_key, Body=_tampered(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), how))
    app_sql(host, "INSERT INTO games VALUES (7, 'live only') ON DUPLICATE KEY UPDATE title = 'live only'")
    before = app_sql(host, "CHECKSUM TABLE games, tickets; SELECT COUNT(*) FROM games")
    r = backups.bingo("restore", "--dump", f"s3://{BUCKET}/{bad_key}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert {"truncated gzip": "truncated", "corrupt gzip": "not a valid gzip",
            "truncated sql": "incomplete"}[how] in r.stderr
    assert app_sql(host, "CHECKSUM TABLE games, tickets; SELECT COUNT(*) FROM games") == before
    assert "bingo_restore" not in host.run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"]).stdout.split()
    s3.delete_object(Bucket=BUCKET, Key=bad_key)


def test_retention_keeps_the_newest_n_complete_dumps(backups):
    host, s3 = backups.host, backups.s3
    for _ in range(3):
        time.sleep(1.1)  # dump names are to the second
        rc, journal = start(host, "bingo-host-backup.service")
        assert rc == 0, journal
    keys = dumps(s3)
    assert len(keys) == 2, keys
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]}
    assert {k + ".json" for k in keys} <= listed
    last = status(backups)["backups"]["last_backup"]
    assert last["ok"] and last["dump"] == f"s3://{BUCKET}/{keys[-1]}"


def test_a_drill_verifies_the_latest_dump_and_a_planted_mismatch_turns_status_degraded(backups):
    host, s3 = backups.host, backups.s3
    rc, journal = start(host, "bingo-host-restore-drill.service")
    assert rc == 0, journal
    report = status(backups)
    drill = report["backups"]["last_verified_restore"]
    assert drill["ok"] and drill["dump"] == f"s3://{BUCKET}/{dumps(s3)[-1]}"
    assert not [p for p in report["problems"] if p["check"].startswith("backups")], report["problems"]
    assert "bingo_drill" not in host.run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"]).stdout.split()
    text = backups.bingo("status").stdout
    assert "last verified restore" in text

    # The recorded count says the dump held two more tickets than the scratch copy has.
    key = dumps(s3)[-1] + ".json"
    sidecar = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    sidecar["tables"]["tickets"] += 2
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(sidecar).encode())
    rc, journal = start(host, "bingo-host-restore-drill.service")
    assert rc != 0 and "tickets" in journal, journal
    report = status(backups)
    assert report["verdict"] == "degraded"
    (problem,) = [p for p in report["problems"] if p["check"] == "backups.restore_drill"]
    assert "tickets" in problem["message"] and problem["severity"] == "error"
    assert "bingo_drill" not in host.run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"]).stdout.split()
