"""Logical backups, `restore --dump` and restore drills on the bootstrapped systemd test host:
the real MariaDB with the dump user bootstrap created, the units bootstrap installed, S3 on
moto (reached through AWS_ENDPOINT_URL_S3, as an operator's drop-in would set it)."""

from __future__ import annotations

import gzip
import hashlib
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


def restore_sql(host, sql: str):
    """Run sql as the restore user (the account the load logs in as)."""
    password = host.read_file("/etc/bingo-host/db-restore-password").strip()
    return host.run(["mariadb", "-u", "bingorestore", "-N", "-B", "-e", sql], env={"MYSQL_PWD": password},
                    check=False)


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


def test_bootstrap_installs_the_timers_and_dump_and_restore_users_confined_to_their_schemas(backups):
    host = backups.host
    for timer in ("bingo-host-backup.timer", "bingo-host-restore-drill.timer"):
        assert host.run(["systemctl", "is-enabled", timer], check=False).stdout.strip() == "enabled"
        assert host.run(["systemctl", "is-active", timer], check=False).stdout.strip() == "active"
    grants = host.run(["mariadb", "-N", "-B", "-e", "SHOW GRANTS FOR bingodump@localhost"]).stdout
    assert "GRANT SELECT, SHOW VIEW, TRIGGER ON `bingo`.* TO `bingodump`@`localhost`" in grants
    assert "RELOAD" not in grants and "ALL PRIVILEGES" not in grants
    for secret in ("db-dump-password", "db-restore-password"):
        assert host.run(["stat", "-c", "%a %U", f"/etc/bingo-host/{secret}"]).stdout.split() == ["600", "root"]
    grants = host.run(["mariadb", "-N", "-B", "-r", "-e", "SHOW GRANTS FOR bingorestore@localhost"]).stdout
    privileges = "SELECT, INSERT, CREATE, DROP, REFERENCES, INDEX, ALTER, LOCK TABLES"
    assert sorted(grants.splitlines()[1:]) == [  # '_' escaped: bingo_restore, not bingo?restore
        f"GRANT {privileges} ON `bingo\\_drill`.* TO `bingorestore`@`localhost`",
        f"GRANT {privileges} ON `bingo\\_restore`.* TO `bingorestore`@`localhost`"], grants
    # Alone, the account can touch nothing but those two schemas: not the live one, not the
    # grants, not a schema the unescaped '_' would have matched.
    host.run(["mariadb", "-e", "CREATE DATABASE bingo_drill; CREATE DATABASE bingoxrestore"])
    try:
        assert restore_sql(host, "CREATE TABLE bingo_drill.t (id INT); INSERT INTO bingo_drill.t VALUES (1); "
                                 "DROP TABLE bingo_drill.t").returncode == 0
        for sql in ("CREATE TABLE bingo.t (id INT)", "CREATE TABLE bingoxrestore.t (id INT)",
                    "SELECT * FROM mysql.global_priv", "USE mysql", "CREATE DATABASE other",
                    "GRANT ALL ON *.* TO bingorestore@localhost", "DROP DATABASE bingo",
                    "CREATE USER x@localhost", "SELECT * FROM bingo.games"):
            r = restore_sql(host, sql)
            assert r.returncode != 0 and "denied" in r.stderr, (sql, r.stderr)
    finally:
        host.run(["mariadb", "-e", "DROP DATABASE bingo_drill; DROP DATABASE bingoxrestore"])
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


# What an attacker who can write to the bucket plants (issue 21): each the whole statement of a
# line put into a real dump, under a far-future name with a matching sidecar, so it is `latest`.
HOSTILE = {
    "system": b"system touch /root/pwned-system",
    "mid-line shell": b"SELECT 1; \\! touch /root/pwned-bang",
    "versioned grant": b"/*!50001 GRANT ALL PRIVILEGES ON *.* TO 'bingoapp'@'localhost' WITH GRANT OPTION */;",
    "use": b"USE`mysql`;",
    "update grants": b"UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', 1073741823) "
                     b"WHERE User = 'bingoapp';",
    "connect": b"connect mysql",
}


def accounts(host) -> str:
    """Every account, its privileges and its grants, as root sees them."""
    rows = host.run(["mariadb", "-N", "-B", "-e", "SELECT User, Host, Priv FROM mysql.global_priv "
                     "ORDER BY User, Host"]).stdout
    grants = [host.run(["mariadb", "-N", "-B", "-e", f"SHOW GRANTS FOR '{u}'@'{h}'"], check=False).stdout
              for u, h, _ in (line.split("\t", 2) for line in rows.splitlines())]
    return rows + "".join(grants)


def test_hostile_dumps_are_refused_by_restore_and_drill_naming_the_line(backups):
    host, s3 = backups.host, backups.s3
    real = dumps(s3)[-1]
    lines = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=real)["Body"].read()).split(b"\n")
    sidecar = json.loads(s3.get_object(Bucket=BUCKET, Key=real + ".json")["Body"].read())
    at = next(i for i, line in enumerate(lines) if line.startswith(b"INSERT INTO `games`")) - 1
    key = f"{PREFIX}bingo-29991231T235959Z.sql.gz"
    live = "CHECKSUM TABLE games, tickets; SELECT COUNT(*) FROM games"
    before = (app_sql(host, live), accounts(host))
    try:
        for name, statement in HOSTILE.items():
            body = gzip.compress(b"\n".join(lines[:at] + [statement] + lines[at:]))
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            s3.put_object(Bucket=BUCKET, Key=key + ".json", Body=json.dumps(
                {**sidecar, "key": key, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())
            for argv in (["restore", "--dump", "latest"], ["restore-drill"]):
                r = backups.bingo(*argv)
                assert r.returncode == 1, (name, argv, r.stdout, r.stderr)
                assert f"line {at + 1} of the dump is refused" in r.stderr, (name, argv, r.stderr)
                assert "Traceback" not in r.stderr
        assert host.run(["sh", "-c", "ls /root/pwned-* 2>/dev/null"], check=False).stdout == ""
        assert (app_sql(host, live), accounts(host)) == before
        schemas = host.run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"]).stdout.split()
        assert "bingo_restore" not in schemas and "bingo_drill" not in schemas
    finally:
        for k in (key, key + ".json"):
            s3.delete_object(Bucket=BUCKET, Key=k)
