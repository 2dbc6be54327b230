"""Backups without a host: the dump stream (row counting, gzip checks, refused statements),
S3 on moto (streamed multipart upload with encryption and tags, retention), the CLI's refusals
and what `status` makes of the records. The real MariaDB runs in tests/test_backup_host.py."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from bingo_host.backup import BackupError, store
from bingo_host.backup.dumpfile import GzipReader, gunzip_statements
from bingo_host.backup.statements import Parser
from bingo_host.cli import main
from bingo_host.config_file import load_config_text
from tests.aws_servers import REGION

# The same three tables as mariadb-dump 10.11 (one row a line) and older clients (one line).
DUMP_1011 = b"""/*M!999999\\- enable the sandbox mode */
-- MariaDB dump 10.19
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;
DROP TABLE IF EXISTS `games`;
CREATE TABLE `games` (
  `id` int(11) NOT NULL,
  `title` text DEFAULT NULL
) ENGINE=InnoDB;
INSERT INTO `games` VALUES
(1,'it\\'s (a) test),(x;'),
(2,'\\\\'),
(3,NULL);
CREATE TABLE `we``ird` (
  `b` blob
) ENGINE=InnoDB;
INSERT INTO `we``ird` VALUES
(0x00FF);
CREATE TABLE `empty` (
  `x` int
) ENGINE=InnoDB;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed on 2026-11-28  8:41:34
"""
DUMP_OLD = (b"CREATE TABLE `games` (\n  `id` int(11) NOT NULL\n);\n"
            b"INSERT INTO `games` VALUES (1,'it\\'s (a) test),(x;'),(2,'\\\\'),(3,NULL);\n"
            b"CREATE TABLE `we``ird` (\n  `b` blob\n);\nINSERT INTO `we``ird` VALUES (0x00FF);\n"
            b"CREATE TABLE `empty` (\n  `x` int\n);\n-- Dump completed on 2026-11-28  8:41:34\n")


@pytest.mark.parametrize("dump", [DUMP_1011, DUMP_OLD], ids=["10.11", "older"])
def test_rows_are_counted_in_either_insert_layout(dump):
    parser = Parser()
    for line in dump.splitlines():
        parser.feed(line)
    parser.finish()
    assert parser.tables == {"games": 3, "we`ird": 1, "empty": 0}
    assert parser.complete


def _gz_chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_gunzip_gives_the_checked_statements_line_for_line_and_checks_the_sha256():
    gz = gzip.compress(DUMP_1011)
    text = b"".join(gunzip_statements(_gz_chunks(gz), hashlib.sha256(gz).hexdigest()))
    # Comments and mariadb-dump's sandbox line (the load runs --sandbox itself) become blank
    # lines: the client's line numbers stay the dump's (spaces between tokens: one at most).
    assert text.splitlines() == [b"" if line.startswith((b"--", b"/*M!999999")) else line.strip()
                                 for line in DUMP_1011.splitlines()]
    with pytest.raises(BackupError, match="sha256"):
        list(gunzip_statements(_gz_chunks(gz), "0" * 64))


@pytest.mark.parametrize("data,reason", [
    (gzip.compress(DUMP_1011)[:-20], "truncated"),
    (gzip.compress(DUMP_1011)[:40] + b"\xff" * 8 + gzip.compress(DUMP_1011)[48:], "not a valid gzip"),
    (gzip.compress(DUMP_1011) + b"junk", "after the end"),
    (gzip.compress(DUMP_1011.rsplit(b"-- Dump completed", 1)[0]), "incomplete"),
    (b"not gzip at all", "not a valid gzip"),
    (gzip.compress(b"USE `mysql`;\n" + DUMP_1011), "line 1 of the dump is refused"),
    (gzip.compress(b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `bingo`;\n" + DUMP_1011), "line 1 "),
    (gzip.compress(b"\\! touch /tmp/pwned\n" + DUMP_1011), "line 1 "),
    (gzip.compress(b"GRANT ALL ON *.* TO x;\n" + DUMP_1011), "line 1 "),
], ids=["truncated", "corrupt", "trailing-junk", "no-trailer", "not-gzip", "use", "create-database",
        "shell-escape", "grant"])
def test_a_bad_dump_raises_before_it_counts_as_loaded(data, reason):
    with pytest.raises(BackupError, match=reason):
        list(gunzip_statements(_gz_chunks(data, 64)))


# -- S3 on moto --

def test_a_large_dump_streams_as_an_encrypted_tagged_multipart_upload(s3, monkeypatch):
    # ~7 MiB compressed: two parts of S3's smallest size.
    monkeypatch.setattr(store, "PART_SIZE", 5 * 1024 * 1024)
    rows = (b"(%d,'%s'),\n" % (i, os.urandom(48).hex().encode()) for i in range(120_000))
    lines = [b"CREATE TABLE `t` (\n", b"  `id` int\n", b");\n", b"INSERT INTO `t` VALUES\n", *rows,
             b"(0,'');\n", b"-- Dump completed\n"]
    reader = GzipReader(iter(lines))
    store.upload(s3, "bingo-backups", "p/bingo-20260101T000000Z.sql.gz", reader, {"bingo-host:managed": "true"})
    assert reader.parser.tables == {"t": 120_001} and reader.parser.complete
    head = s3.head_object(Bucket="bingo-backups", Key="p/bingo-20260101T000000Z.sql.gz")
    assert head["ContentLength"] == reader.size > store.PART_SIZE
    assert head["ServerSideEncryption"] == "AES256"
    assert "-" in head["ETag"]  # a multipart upload's ETag
    tags = s3.get_object_tagging(Bucket="bingo-backups", Key="p/bingo-20260101T000000Z.sql.gz")["TagSet"]
    assert tags == [{"Key": "bingo-host:managed", "Value": "true"}]
    body = b"".join(store.chunks(s3, "bingo-backups", "p/bingo-20260101T000000Z.sql.gz"))
    assert hashlib.sha256(body).hexdigest() == reader.sha256.hexdigest()


def _put(s3, key: str, complete: bool = True) -> None:
    s3.put_object(Bucket="bingo-backups", Key=key, Body=gzip.compress(DUMP_1011))
    if complete:
        s3.put_object(Bucket="bingo-backups", Key=key + ".json", Body=b'{"tables": {}}')


def test_retention_keeps_n_complete_dumps_and_never_another_prefix_or_database(s3):
    for day in range(1, 6):
        _put(s3, f"p/bingo-2026010{day}T000000Z.sql.gz", complete=day != 2)
    _put(s3, "p/bingo-20260107T000000Z.sql.gz", complete=False)  # a run under way, or killed
    _put(s3, "p/bingo2-20260101T000000Z.sql.gz")  # another database
    _put(s3, "other/bingo-20260101T000000Z.sql.gz")
    _put(s3, "p/bingo-manual.sql.gz")  # not a name backup makes
    dumps = store.list_dumps(s3, "bingo-backups", "p/", "bingo")
    assert [d.key[2:17] for d in dumps] == ["bingo-20260101T", "bingo-20260102T", "bingo-20260103T",
                                           "bingo-20260104T", "bingo-20260105T", "bingo-20260107T"]
    deleted = store.prune(s3, dumps, keep=2)
    assert sorted(d.key for d in deleted) == [f"p/bingo-2026010{d}T000000Z.sql.gz" for d in (1, 2, 3)]
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bingo-backups")["Contents"])
    assert left == sorted([
        "other/bingo-20260101T000000Z.sql.gz", "other/bingo-20260101T000000Z.sql.gz.json",
        "p/bingo-20260104T000000Z.sql.gz", "p/bingo-20260104T000000Z.sql.gz.json",
        "p/bingo-20260105T000000Z.sql.gz", "p/bingo-20260105T000000Z.sql.gz.json",
        "p/bingo-20260107T000000Z.sql.gz", "p/bingo-manual.sql.gz", "p/bingo-manual.sql.gz.json",
        "p/bingo2-20260101T000000Z.sql.gz", "p/bingo2-20260101T000000Z.sql.gz.json"])


def test_s3_failures_say_what_failed_and_what_to_grant(s3):
    with pytest.raises(BackupError, match="S3 ListObjectsV2 failed: NoSuchBucket"):
        store.list_dumps(s3, "no-such-bucket-here", "p/", "bingo")
    # moto does not enforce IAM on S3: the mapping of a denial is checked on AWS's answer.
    from botocore.exceptions import ClientError

    for op, grant in (("PutObject", "s3:PutObject and s3:PutObjectTagging"), ("ListObjectsV2", "s3:ListBucket"),
                      ("upload", "s3:AbortMultipartUpload")):
        err = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, op)
        assert grant in str(store._error(op, err))


# -- the CLI's refusals: exit 2, naming the option or field --

@pytest.mark.parametrize("argv,config,field", [
    (["backup"], "{}", "backups.enabled"),
    (["restore-drill"], "{}", "backups.enabled"),
    (["restore"], "{}", "--snapshot or --dump"),
    (["restore", "--dump", "latest", "--snapshot", "snap-0123456789abcdef0"], "{}", "--snapshot or --dump"),
    (["restore", "--dump", "s3://bucket/key.txt"], "{}", "--dump"),
    (["restore", "--dump", "/tmp/local.sql.gz"], "{}", "--dump"),
])
def test_cli_refuses_with_exit_2(tmp_path, monkeypatch, argv, config, field):
    """Refused before anything is touched: not even the host lock's file is made."""
    monkeypatch.setenv("BINGO_HOST_LOCK_DIR", str(tmp_path / "locks"))
    path = tmp_path / "config.yaml"
    path.write_text(config + "\n")
    result = CliRunner().invoke(main, ["--config", str(path), *argv])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"bingo-host: error: {field}: "), result.output
    assert not (tmp_path / "locks").exists()


# -- status --

def _record(path, **values) -> str:
    path.write_text(json.dumps(values))
    return str(path)


def test_status_degrades_on_a_failed_or_overdue_drill(tmp_path):
    from bingo_host.status import checks, records

    cfg = load_config_text("backups: {enabled: true, bucket: bingo-backups}\n")
    now = time.time()
    iso = records.iso
    backup = _record(tmp_path / "b.json", ok=True, url="s3://b/k", finished=iso(now - 3600),
                     first_started=iso(now - 90 * 86400))

    def problems(drill_path):
        r = checks.Report()
        records.check_backups(r, cfg, backup, drill_path)
        return r, {p["check"]: p for p in r.problems}

    r, found = problems(_record(tmp_path / "d.json", ok=True, dump="s3://b/k", finished=iso(now - 86400)))
    assert not found and r.data["backups"]["last_verified_restore"]["ok"]
    _, found = problems(_record(tmp_path / "d.json", ok=False, dump="s3://b/k", finished=iso(now),
                                error="the restored row counts differ: tickets"))
    assert "tickets" in found["backups.restore_drill"]["message"]
    _, found = problems(_record(tmp_path / "d.json", ok=True, finished=iso(now - 63 * 86400)))
    assert found["backups.restore_drill"]["severity"] == "warning"  # two monthly periods and more
    _, found = problems(str(tmp_path / "never.json"))  # backups for 90 days, never a drill
    assert "no restore drill" in found["backups.restore_drill"]["message"]
    r = checks.Report()
    records.check_backups(r, load_config_text("{}\n"), backup, backup)
    assert r.data["backups"] is None and not r.problems


# -- an external database (Aurora's place): a real mariadbd over TCP on 127.0.0.2 --

EXT_PASSWORD = "extapp-password-0123"


@pytest.fixture(scope="module")
def tcp_mariadb():
    """mariadbd listening on 127.0.0.2 only (bingo-host treats it as external); the app user
    may use its database and the bingo_* schemas a restore needs, nothing else."""
    import shutil
    import signal
    import subprocess
    import tempfile

    from tests.aws_servers import free_port

    if os.geteuid() != 0 or not shutil.which("mariadbd"):
        pytest.skip("needs root and mariadb-server")
    work = tempfile.mkdtemp(prefix="bingo-extdb-")
    os.chmod(work, 0o755)
    shutil.chown(work, "mysql", "mysql")
    port = free_port()
    sock = f"{work}/sock"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={work}/data", "--user=mysql",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], check=True,
                   capture_output=True)
    proc = subprocess.Popen(["mariadbd", "--no-defaults", f"--datadir={work}/data", f"--socket={sock}",
                             "--bind-address=127.0.0.2", f"--port={port}", "--user=mysql",
                             f"--pid-file={work}/pid", f"--log-error={work}/err",
                             "--innodb-buffer-pool-size=32M"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sql = ("CREATE DATABASE bingo; "
               f"CREATE USER extapp@'%' IDENTIFIED BY '{EXT_PASSWORD}'; "
               "GRANT ALL ON `bingo`.* TO extapp@'%'; GRANT ALL ON `bingo\\_%`.* TO extapp@'%';")
        for _ in range(100):
            if subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", sql],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("mariadbd did not start")
        yield SimpleNamespace(port=port, socket=sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def test_an_external_database_is_backed_up_restored_and_drilled_over_tcp(tcp_mariadb, s3, tmp_path,
                                                                         monkeypatch):
    import pymysql

    from bingo_host.backup import run
    from bingo_host.facts import platforms

    monkeypatch.setenv("BINGO_HOST_LOCK_DIR", str(tmp_path / "locks"))
    cfg = load_config_text(f"database: {{host: 127.0.0.2, port: {tcp_mariadb.port}, user: extapp, "
                           f"password: '{EXT_PASSWORD}'}}\n"
                           "backups: {enabled: true, bucket: bingo-backups, keep: 3}\n")
    assert not cfg.database.local
    platform = platforms.get("debian12")
    app = pymysql.connect(host="127.0.0.2", port=tcp_mariadb.port, user="extapp", password=EXT_PASSWORD,
                          database="bingo", autocommit=True)

    def rows():
        with app.cursor() as cur:
            cur.execute("SELECT id, title FROM games ORDER BY id")
            return cur.fetchall()

    with app.cursor() as cur:
        cur.execute("CREATE TABLE games (id INT PRIMARY KEY, title TEXT)")
        cur.execute("INSERT INTO games VALUES (1, 'one'), (2, 'two')")
    record = run.backup(cfg, platform, s3=s3, state_file=str(tmp_path / "backup.json"))
    assert record["ok"] and record["tables"] == {"games": 2}
    with app.cursor() as cur:
        cur.execute("INSERT INTO games VALUES (3, 'after')")
    run.restore(cfg, platform, "latest", s3=s3)
    assert rows() == ((1, "one"), (2, "two"))
    drill = run.drill(cfg, platform, s3=s3, state_file=str(tmp_path / "drill.json"))
    assert drill["ok"] and drill["tables"] == {"games": 2}
    app.close()


def test_an_external_restore_loads_as_the_master_login_of_admin_secret(tcp_mariadb, s3, tmp_path,
                                                                       monkeypatch, moto_server):
    """On Aurora the app's own user may use only its database (bootstrap creates it so): the
    staging schemas and the swap need the master login, read from database.admin_secret. An app
    user without the bingo_* grants restores through it; the master password never reaches a
    command line (an option file) and the dump still runs as the app's user."""
    import json
    import subprocess

    import boto3
    import pymysql

    from bingo_host.backup import database, run
    from bingo_host.facts import platforms

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.url)  # beside s3's
    monkeypatch.setenv("BINGO_HOST_LOCK_DIR", str(tmp_path / "locks"))
    sock = tcp_mariadb.socket
    master_pw = "master-password-0123"
    subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e",
                    "CREATE USER IF NOT EXISTS onlyapp@'%' IDENTIFIED BY 'onlyapp-pw-0123'; "
                    "GRANT ALL ON `bingo`.* TO onlyapp@'%'; "
                    f"CREATE USER IF NOT EXISTS master@'%' IDENTIFIED BY '{master_pw}'; "
                    "GRANT ALL ON *.* TO master@'%' WITH GRANT OPTION;"], check=True)
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="bingo-master", SecretString=json.dumps({"username": "master", "password": master_pw}))["ARN"]
    cfg = load_config_text(f"database: {{host: 127.0.0.2, port: {tcp_mariadb.port}, user: onlyapp, "
                           f"password: 'onlyapp-pw-0123', admin_secret: 'secretsmanager:{arn}'}}\n"
                           "snapshots: {enabled: false}\n"
                           "backups: {enabled: true, bucket: bingo-backups, prefix: master/, keep: 3}\n")
    platform = platforms.get("debian12")
    assert database.dump_login(cfg, platform).user == "onlyapp"
    assert database.admin_login(cfg, platform).user == "master"
    app = pymysql.connect(host="127.0.0.2", port=tcp_mariadb.port, user="onlyapp",
                          password="onlyapp-pw-0123", database="bingo", autocommit=True)
    with app.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS tickets (id INT PRIMARY KEY)")
        cur.execute("DELETE FROM tickets")
        cur.execute("INSERT INTO tickets VALUES (1), (2)")
    assert run.backup(cfg, platform, s3=s3, state_file=str(tmp_path / "b.json"))["ok"]
    with app.cursor() as cur:
        cur.execute("INSERT INTO tickets VALUES (3)")
    run.restore(cfg, platform, "latest", s3=s3)
    with app.cursor() as cur:
        cur.execute("SELECT id FROM tickets ORDER BY id")
        assert cur.fetchall() == ((1,), (2,))
    app.close()


def test_option_files_verify_an_external_servers_certificate():
    from bingo_host.backup.database import Login, option_file

    with option_file(Login(None, "db.example.com", 3306, "app", "pw", "/etc/bingo-host/rds.pem")) as path:
        text = open(path).read()
    assert "ssl-ca=/etc/bingo-host/rds.pem\nssl-verify-server-cert\n" in text
    with option_file(Login("/run/mysqld/mysqld.sock", "localhost", 3306, "root", None)) as path:
        assert "ssl" not in open(path).read()


# -- the load's layers, each alone, on a real server and the real client --

def _root_sql(sock: str, sql: str, database: str = "") -> str:
    import subprocess

    return subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-N", "-B", "-e", sql, *filter(None, [database])],
                          check=True, capture_output=True, text=True).stdout


def test_the_clients_sandbox_alone_stops_shell_commands(tcp_mariadb, tmp_path):
    """Fed raw (no parser in front), the client as the load runs it refuses `system` and `\\!`."""
    import subprocess

    from bingo_host.backup.database import Login, load_argv, option_file, require_sandbox

    require_sandbox()  # Debian 12's client has it
    _root_sql(tcp_mariadb.socket, "CREATE DATABASE IF NOT EXISTS sandboxed")
    for n, line in enumerate([f"system touch {tmp_path}/a", f"SELECT 1; \\! touch {tmp_path}/b",
                              f"\\! touch {tmp_path}/c"]):
        with option_file(Login(tcp_mariadb.socket, "localhost", 3306, "root", None)) as options:
            r = subprocess.run(load_argv(options, "sandboxed"), input=(line + "\n").encode(), capture_output=True)
        # --sandbox refuses `system`; --binary-mode does not know `\!` at all (either stops it)
        assert r.returncode != 0 and re.search(rb"sandbox|Unknown command '\\!'", r.stderr), (line, r.stderr)
    assert os.listdir(tmp_path) == [p for p in os.listdir(tmp_path) if p.endswith(".cnf")]


def test_a_client_without_sandbox_is_refused_before_anything_is_loaded(tcp_mariadb, s3, tmp_path, monkeypatch):
    """A client older than 10.5.25/10.6.18/10.11.8 (here one whose help lists no --sandbox)."""
    from bingo_host.backup import database, run
    from bingo_host.facts import platforms

    old = tmp_path / "mariadb"
    old.write_text("#!/bin/sh\necho 'mariadb  Ver 15.1 Distrib 10.5.16-MariaDB'\necho '  --binary-mode  Binary mode'\n")
    old.chmod(0o755)
    monkeypatch.setattr(database, "CLIENT", str(old))
    with pytest.raises(BackupError, match=r"client \(mariadb  Ver 15.1 Distrib 10.5.16-MariaDB\) has no --sandbox"):
        database.require_sandbox()
    monkeypatch.setattr(database, "CLIENT", str(tmp_path / "absent"))
    with pytest.raises(BackupError, match="cannot run the .*absent client"):
        database.require_sandbox()
    monkeypatch.setattr(database, "CLIENT", str(old))
    _put(s3, "bingo-host/bingo-29991231T235959Z.sql.gz")
    cfg = load_config_text(f"database: {{host: 127.0.0.2, port: {tcp_mariadb.port}, user: extapp, "
                           f"password: '{EXT_PASSWORD}'}}\nbackups: {{enabled: true, bucket: bingo-backups}}\n")
    with pytest.raises(BackupError, match="has no --sandbox"):
        run.restore(cfg, platforms.get("debian12"), "latest", s3=s3)
    assert "bingo_restore" not in _root_sql(tcp_mariadb.socket, "SHOW DATABASES").split()


def test_the_checked_text_of_a_real_dump_loads_to_the_same_tables(tcp_mariadb):
    """The fixture dump as the plain client loads it, and its checked text as a restore loads it
    (--sandbox --binary-mode), make the same tables."""
    import subprocess
    from pathlib import Path

    from bingo_host.backup.database import Login, load_argv, option_file

    fixtures = Path(__file__).parent / "fixtures" / "dumps"
    sock = tcp_mariadb.socket
    _root_sql(sock, "CREATE DATABASE sample; CREATE DATABASE sample_copy")
    subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "sample"], check=True,
                   input=(fixtures / "mariadb-dump-10.11.sql").read_bytes())
    text = b"".join(gunzip_statements([gzip.compress((fixtures / "mariadb-dump-10.11.sql").read_bytes())]))
    with option_file(Login(sock, "localhost", 3306, "root", None)) as options:
        subprocess.run(load_argv(options, "sample_copy"), input=text, check=True)
    tables = "games, `tick``ets`, empty_one"
    def sums(db):
        return [line.split("\t")[1] for line in _root_sql(sock, f"CHECKSUM TABLE {tables}", db).splitlines()]
    assert sums("sample_copy") == sums("sample")
    _root_sql(sock, "DROP DATABASE sample; DROP DATABASE sample_copy")


def test_grants_escape_wildcards_in_the_database_name(tcp_mariadb):
    """`mysq_`.* unescaped covers `mysql`: the converge step's grant names only `mysq_` and is
    kept as it is on the next run."""
    from bingo_host.converge.steps import mariadb as step
    from bingo_host.facts import mariadb

    sock = tcp_mariadb.socket
    changes = []
    ctx = SimpleNamespace(change=lambda what, fn: (changes.append(what), fn()),
                          fact=lambda fn, *args: fn(*args))
    wanted = {("ALL PRIVILEGES", mariadb.schema_grant("mysq_"))}
    conn = mariadb.connect(sock)
    try:
        with conn.cursor() as cur:
            for _ in range(2):
                step._ensure_user(ctx, cur, "wild", "localhost", "wild-Passw0rd-1", wanted, "app",
                                  lambda u, p: mariadb.can_login(sock, u, p))
            assert mariadb.grants(cur, "wild") == {("ALL PRIVILEGES", "`mysq\\_`.*")}
    finally:
        conn.close()
    assert changes == ["create the app user wild@localhost", "grant wild ALL PRIVILEGES ON `mysq\\_`.*"]
    import pymysql
    wild = mariadb.connect(sock, "wild", "wild-Passw0rd-1")
    try:
        with wild.cursor() as cur, pytest.raises(pymysql.err.OperationalError, match="denied"):
            cur.execute("SELECT * FROM mysql.global_priv")
    finally:
        wild.close()
        _root_sql(sock, "DROP USER wild@localhost")
    assert mariadb.schema_grant("a%b\\c`d") == "`a\\%b\\\\c``d`.*"


def test_a_trigger_and_hostile_names_and_values_neither_miscount_nor_reach_the_client(
        tcp_mariadb, s3, tmp_path, monkeypatch, caplog):
    """What the app itself wrote: a table named with backticks and quotes, a trigger whose body
    holds `INSERT INTO ... VALUES (`, values holding client commands and row syntax. The backup
    leaves the trigger out (and says so), counts each row once; the restore brings the rows back
    as they were, runs nothing, loads no trigger (and refuses while the live table has one:
    MariaDB cannot rename a table with a trigger into another schema)."""
    import pymysql

    from bingo_host.backup import run
    from bingo_host.facts import platforms

    cfg = load_config_text(f"database: {{host: 127.0.0.2, port: {tcp_mariadb.port}, user: extapp, "
                           f"password: '{EXT_PASSWORD}'}}\nbackups: {{enabled: true, bucket: bingo-backups}}\n")
    platform = platforms.get("debian12")
    table = "`we``ird \"t' (x`"
    values = [f"system touch {tmp_path}/a", f"x'); \\! touch {tmp_path}/b; --", "'),(',(", "INSERT INTO `y` VALUES ("]
    app = pymysql.connect(host="127.0.0.2", port=tcp_mariadb.port, user="extapp", password=EXT_PASSWORD,
                          database="bingo", autocommit=True)
    try:
        with app.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v TEXT)")
            cur.execute(f"CREATE TRIGGER `trg` BEFORE INSERT ON {table} FOR EACH ROW "
                        "SET NEW.v = CONCAT(NEW.v, ' INSERT INTO `x` VALUES (1),(2);')")
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", list(enumerate(values)))
            cur.execute(f"SELECT id, v FROM {table} ORDER BY id")
            before = cur.fetchall()
        caplog.set_level(logging.INFO, logger="bingo_host")
        record = run.backup(cfg, platform, s3=s3, state_file=str(tmp_path / "b.json"))
        assert record["tables"]["we`ird \"t' (x"] == 4
        assert "leaves out the triggers of bingo (trg)" in caplog.text
        with app.cursor() as cur:
            cur.execute(f"DELETE FROM {table}")
        with pytest.raises(BackupError, match=r"tables with triggers cannot move .*\(trg in bingo\)"):
            run.restore(cfg, platform, "latest", s3=s3)
        with app.cursor() as cur:
            cur.execute("DROP TRIGGER `trg`")
        run.restore(cfg, platform, "latest", s3=s3)
        with app.cursor() as cur:
            cur.execute(f"SELECT id, v FROM {table} ORDER BY id")
            assert cur.fetchall() == before
            cur.execute("SHOW TRIGGERS")
            assert cur.fetchall() == ()
        assert not {"a", "b"} & set(os.listdir(tmp_path))  # no shell command ran
    finally:
        with app.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        app.close()
