"""A database password that changes (a rotated secret) on a real MariaDB (tests.aws_servers'
loop_mariadb), and secrets read from Secrets Manager (moto) the way refresh reads them.

The previous password must stay valid after a change: uWSGI workers (or other hosts) that still
hold it keep connecting until they reload. Only the one before that stops working.
"""

from __future__ import annotations

import json

import boto3
import pytest

from bingo_host import secrets
from bingo_host.context import Context
from bingo_host.converge.steps import mariadb as step
from bingo_host.errors import BingoHostError
from bingo_host.facts import mariadb


@pytest.fixture
def root_cursor(loop_mariadb):
    conn = mariadb.connect(loop_mariadb.socket)
    with conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'rotating'@'localhost'")
        yield cur
        cur.execute("DROP USER IF EXISTS 'rotating'@'localhost'")
    conn.close()


def ensure(cur, socket, password, dry_run=False):
    ctx = Context(cfg=None, platform=None, facts=None, dry_run=dry_run)
    step._ensure_user(ctx, cur, "rotating", "localhost", password, {("SELECT", "`bingotest`.*")}, "app",
                      lambda user, pw: mariadb.can_login(socket, user, pw))
    return ctx.changes


def test_a_changed_password_keeps_the_previous_one_until_the_next_change(loop_mariadb, root_cursor):
    sock = loop_mariadb.socket
    assert ensure(root_cursor, sock, "first-Passw0rd-1")[0].startswith("create the app user rotating@localhost")
    assert ensure(root_cursor, sock, "first-Passw0rd-1") == []  # converged
    assert ensure(root_cursor, sock, "second-Passw0rd-2", dry_run=True) != []
    assert not mariadb.can_login(sock, "rotating", "second-Passw0rd-2")  # dry run changed nothing

    assert ensure(root_cursor, sock, "second-Passw0rd-2") == [
        "set the app user's password (the previous one stays valid until the next change)"]
    assert mariadb.can_login(sock, "rotating", "second-Passw0rd-2")
    assert mariadb.can_login(sock, "rotating", "first-Passw0rd-1")  # old workers still connect
    assert ensure(root_cursor, sock, "second-Passw0rd-2") == []

    ensure(root_cursor, sock, "third-Passw0rd-3")
    assert mariadb.can_login(sock, "rotating", "third-Passw0rd-3")
    assert mariadb.can_login(sock, "rotating", "second-Passw0rd-2")
    assert not mariadb.can_login(sock, "rotating", "first-Passw0rd-1")
    assert not mariadb.can_login(sock, "rotating", "wrong-Passw0rd-0")
    assert mariadb.grants(root_cursor, "rotating") == {("SELECT", "`bingotest`.*")}


@pytest.fixture
def secretsmanager(aws_env, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.url)
    moto_server.reset()
    return boto3.client("secretsmanager", region_name="eu-west-1")


def test_secret_values_and_master_logins_from_secrets_manager(secretsmanager):
    sm = secretsmanager
    sm.create_secret(Name="bingo/app-db", SecretString=json.dumps({"username": "bingoapp", "password": "a%b"}))
    assert secrets.fetch("secretsmanager:bingo/app-db", region="eu-west-1") == "a%b"
    sm.put_secret_value(SecretId="bingo/app-db", SecretString=json.dumps({"password": "rotated-1"}))
    assert secrets.fetch("secretsmanager:bingo/app-db", region="eu-west-1") == "rotated-1"  # AWSCURRENT

    sm.create_secret(Name="rds!cluster-1", SecretString=json.dumps({"username": "admin", "password": "m-pw"}))
    assert secrets.fetch_login("secretsmanager:rds!cluster-1", region="eu-west-1") == ("admin", "m-pw")
    sm.create_secret(Name="plain", SecretString="just-a-password")
    with pytest.raises(BingoHostError, match="username.*password"):
        secrets.fetch_login("secretsmanager:plain", region="eu-west-1")
    # A value that would add a line to bingo.ini is refused, whichever key holds it.
    sm.create_secret(Name="two-lines", SecretString=json.dumps({"username": "x\n[y]", "password": "p"}))
    with pytest.raises(BingoHostError, match="username must be one non-empty line"):
        secrets.fetch_login("secretsmanager:two-lines", region="eu-west-1")
    sm.put_secret_value(SecretId="bingo/app-db", SecretString="pw\nextra = 1")
    with pytest.raises(BingoHostError, match="one non-empty line"):
        secrets.fetch("secretsmanager:bingo/app-db", region="eu-west-1")
