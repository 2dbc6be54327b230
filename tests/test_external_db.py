"""External-database mode as the HA stack runs it, on the shared bootstrapped test host: the
host's own MariaDB stands in for Aurora (another name, TCP, TLS with a CA made here, a 'master'
account that may only log in over TLS), Secrets Manager is moto.

Bootstrap makes the app's own user with the master login; the app and bingo-host reach the
server over TLS only, verifying its certificate; a rotated app password (a new secret version)
is followed by `bingo-host secrets refresh` through its systemd unit, under load, with no failed
request. Needs a deployed release: after test_deploy it uses that one, alone it deploys its own.
"""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest

from tests.conftest import BIN, CONFIG, host_config
from tests.deploying import ENV, ROOT, Bundles, Load, health_reason, http, use_the_app
from tests.tls_certs import make_ca, pem, server_cert

REGION = "eu-west-1"
DB_HOST = "db.bingo.test"  # in the host's /etc/hosts: 127.0.0.1
TLS_DIR = "/etc/mysql/bingo-test-tls"
TLS_CNF = "/etc/mysql/mariadb.conf.d/zzz-bingo-test-tls.cnf"
CA_PATH = "/etc/bingo-host/test-db-ca.pem"
INI = f"{ROOT}/shared/bingo.ini"
UNIT = "bingo-host-secrets-refresh.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/endpoints.conf"
MASTER_PASSWORD = "Master-Passw0rd-4f2a"
APP_PASSWORD = "App%Passw0rd-first"  # '%' must reach bingo.ini as '%%'
ROTATED_PASSWORD = "App%Passw0rd-rotated"


def aws_env(moto) -> dict:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": moto.url,
            "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost"}


def sql(host, statement: str, check: bool = True):
    return host.run(["mariadb", "-N", "-B", "-e", statement], check=check)


def workers(host) -> set[int]:
    """PIDs of the app's uWSGI workers (processes of the app user inside a release)."""
    out = host.run_shell("for p in $(pgrep -f -u music-bingo uwsgi); do "
                         f"case $(readlink /proc/$p/cwd) in {ROOT}/releases/*) echo $p;; esac; done",
                         check=False).stdout
    return {int(p) for p in out.split()}


def wait_reloaded(host, before: set[int], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = workers(host)
        if len(now) >= 2 and not now & before:
            return
        time.sleep(0.3)
    pytest.fail(f"uWSGI workers not replaced: before {before}, now {workers(host)}")


@pytest.fixture(scope="module")
def host(host_pool, wheel, tmp_path_factory):
    bootstrapped = host_pool.bootstrapped()
    assert bootstrapped.first.returncode == 0, bootstrapped.first.stdout + bootstrapped.first.stderr
    host = bootstrapped.host
    if host.run(["readlink", f"{ROOT}/current"]).stdout.strip().endswith("placeholder"):
        bundle = Bundles(host, wheel, tmp_path_factory.mktemp("bundles")).make("extdb")
        r = host.run([BIN, "deploy", bundle, "--deployment-id", "d-EXTDB0001"], env=ENV, check=False,
                     timeout=1200)
        assert r.returncode == 0, r.stdout + r.stderr
    return bootstrapped


@pytest.fixture(scope="module")
def tls(host):
    """MariaDB serving TLS with a certificate for DB_HOST from a CA made here; a 'master'
    account that must use TLS. Undone afterwards."""
    h = host.host
    ca_key, ca = make_ca("bingo test database CA")
    key, cert = server_cert(ca_key, ca, DB_HOST)
    _, wrong_ca = make_ca("some other CA")
    h.put_file(f"{TLS_DIR}/ca.pem", pem(ca))
    h.put_file(f"{TLS_DIR}/server.pem", pem(cert))
    h.put_file(f"{TLS_DIR}/server-key.pem", pem(key), mode=0o600)
    h.run(["chown", "-R", "mysql:mysql", TLS_DIR])
    h.put_file(TLS_CNF, f"[mariadbd]\nssl_ca = {TLS_DIR}/ca.pem\nssl_cert = {TLS_DIR}/server.pem\n"
                        f"ssl_key = {TLS_DIR}/server-key.pem\n")
    h.put_file(CA_PATH, pem(ca))
    h.run_shell(f"grep -q ' {DB_HOST}$' /etc/hosts || echo '127.0.0.1 {DB_HOST}' >> /etc/hosts; "
                "grep -q ' db2.bingo.test$' /etc/hosts || echo '127.0.0.1 db2.bingo.test' >> /etc/hosts")
    h.run(["systemctl", "restart", "mariadb"])
    sql(h, "DROP USER IF EXISTS 'master'@'%'; DROP USER IF EXISTS 'ext_app'@'%'; DROP DATABASE IF EXISTS ext_bingo")
    sql(h, f"CREATE USER 'master'@'%' IDENTIFIED BY '{MASTER_PASSWORD}' REQUIRE SSL; "
           "GRANT ALL PRIVILEGES ON *.* TO 'master'@'%' WITH GRANT OPTION")
    try:
        yield {"ca": pem(ca), "wrong_ca": pem(wrong_ca)}
    finally:
        h.put_file(CONFIG, host_config(host.volume.device), mode=0o600)
        sql(h, "DROP USER IF EXISTS 'master'@'%'; DROP USER IF EXISTS 'ext_app'@'%'; "
               "DROP DATABASE IF EXISTS ext_bingo", check=False)
        h.run(["rm", "-rf", TLS_DIR, TLS_CNF, CA_PATH, DROPIN], check=False)
        h.run(["systemctl", "daemon-reload"], check=False)
        h.run(["systemctl", "restart", "mariadb"], check=False)
        back = host.bingo("bootstrap")
        assert back.returncode == 0, back.stdout + back.stderr


@pytest.fixture(scope="module")
def secrets(tls, moto_server):
    moto_server.reset()
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server.url,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    master = sm.create_secret(Name="rds!cluster-test",
                              SecretString=json.dumps({"username": "master", "password": MASTER_PASSWORD}))
    app = sm.create_secret(Name="bingo/ext-app-db",
                           SecretString=json.dumps({"username": "ext_app", "password": APP_PASSWORD}))
    return {"client": sm, "master": master["ARN"], "app": app["ARN"]}


def external_config(bootstrapped, secrets, **database) -> str:
    return host_config(bootstrapped.volume.device, database={
        "host": DB_HOST, "name": "ext_bingo", "user": "ext_app", "password": f"secretsmanager:{secrets['app']}",
        "admin_secret": f"secretsmanager:{secrets['master']}", "tls_ca": CA_PATH, **database})


def wait_healthy(timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        status, body = http("/api/health")
        if status == 200:
            return body
        time.sleep(0.5)
    pytest.fail(f"not healthy: {body}")


def test_bootstrap_makes_the_apps_own_user_over_tls(host, secrets, moto_server):
    h = host.host
    before = workers(h)
    h.put_file(CONFIG, external_config(host, secrets), mode=0o600)
    r = h.run([BIN, "bootstrap"], env=aws_env(moto_server), check=False, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "create database ext_bingo on db.bingo.test" in out
    assert "create the app user ext_app@%" in out
    assert re.search(r"^mariadb\s+changed\s.*$", r.stdout, re.M)
    assert MASTER_PASSWORD not in out and "Passw0rd-first" not in out
    # Its database only: no global privilege, nothing on another schema.
    grants = sql(h, "SHOW GRANTS FOR 'ext_app'@'%'").stdout
    # `_` escaped, so no wildcard; --batch writes that escaping backslash doubled.
    assert r"GRANT ALL PRIVILEGES ON `ext\\_bingo`.* TO `ext_app`@`%`" in grants, grants
    assert not re.search(r"GRANT (?!USAGE)\S.* ON \*\.\*", grants), grants
    ini = h.read_file(INI)
    assert "passwd = App%%Passw0rd-first\n" in ini  # '%' escaped as for literals
    assert f'ssl = {{"ssl_ca": "{CA_PATH}"}}\n' in ini
    assert "bingoadmin" not in ini and "master" not in ini  # the app never logs in as master
    assert h.testinfra.service("bingo-host-secrets-refresh.timer").is_enabled

    # From now on the app user may log in over TLS only: the app and the health check still work.
    sql(h, "ALTER USER 'ext_app'@'%' REQUIRE SSL")
    wait_reloaded(h, before)
    assert wait_healthy() == "ok\n"
    use_the_app("external")
    assert sql(h, "SELECT username FROM ext_bingo.User").stdout.split() == ["external"]

    again = h.run([BIN, "bootstrap"], env=aws_env(moto_server), check=False, timeout=600)
    assert "already converged" in again.stdout, again.stdout + again.stderr
    assert re.search(r"^mariadb\s+unchanged\s+external database ext_app@db.bingo.test:3306/ext_bingo "
                     r"answers over TLS", again.stdout, re.M)


def test_rotated_app_password_is_followed_under_load(host, secrets, moto_server):
    """A new secret version: refresh (through its unit) gives the database user the new password
    while the old stays valid, rewrites bingo.ini, chain-reloads: no request fails."""
    h = host.host
    status, body = http("/api/user", "PUT", {"username": "rotator", "password": "pw-rotator",
                                             "email": "rotator@example.com"})
    assert status == 200, body
    token = json.loads(body)["access_token"]
    env = aws_env(moto_server)
    h.put_file(DROPIN, "[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in env.items()))
    h.run(["systemctl", "daemon-reload"])
    unchanged = h.run(["systemctl", "start", UNIT], check=False, timeout=300)
    journal = h.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout
    assert unchanged.returncode == 0 and "nothing changed" in journal, journal

    before = workers(h)
    secrets["client"].put_secret_value(
        SecretId=secrets["app"], SecretString=json.dumps({"username": "ext_app", "password": ROTATED_PASSWORD}))
    load = Load(rate=20, requests=[("/", {}), ("/api/health", {}),
                                   ("/api/user", {"Authorization": f"Bearer {token}"})])
    with load:
        time.sleep(2)
        run = h.run(["systemctl", "start", UNIT], check=False, timeout=300)
        time.sleep(3)
    journal = h.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout
    assert run.returncode == 0, journal
    assert "set the app user's password (the previous one stays valid" in journal
    assert "uWSGI workers reloaded" in journal and "rewritten with the new values" in journal
    assert "Passw0rd-rotated" not in journal
    sent, failed, p50, p99 = load.summary()
    print(f"rotation under load: {sent} requests, {failed} failed, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert sent > 60 and failed == 0, (sent, failed, p99)
    assert not workers(h) & before
    assert "passwd = App%%Passw0rd-rotated\n" in h.read_file(INI)
    # The database takes the new password and, until the next change, the previous one.
    login = ("import pymysql, sys; pymysql.connect(host='db.bingo.test', user='ext_app', "
             "password=sys.argv[1], ssl={'ca': '%s'}).close()" % CA_PATH)
    for password in (ROTATED_PASSWORD, APP_PASSWORD):
        r = h.run(["/opt/bingo-host/venv/bin/python", "-c", login, password], check=False)
        assert r.returncode == 0, r.stderr
    assert h.run(["/opt/bingo-host/venv/bin/python", "-c", login, "App%Passw0rd-wrong"], check=False).returncode
    assert wait_healthy() == "ok\n"
    use_the_app("after-rotation")


def test_a_wrong_ca_or_host_name_fails_health_and_bootstrap(host, secrets, tls, moto_server):
    """The certificate is verified: against database.tls_ca by the app's driver (health), and
    against the host name too by bingo-host."""
    h = host.host
    try:
        h.put_file(CA_PATH, tls["wrong_ca"])
        error = health_reason(h)  # in the app's journal; the answer is only `unavailable`
        assert "SSL" in error or "certificate" in error, error
        st = h.run([BIN, "status"], check=False, timeout=120)
        assert st.returncode == 1 and "database" in st.stdout
        r = h.run([BIN, "bootstrap"], env=aws_env(moto_server), check=False, timeout=600)
        assert r.returncode == 1 and re.search(r"^mariadb\s+failed\s.*certificate verify failed", r.stdout, re.M), \
            r.stdout + r.stderr
    finally:
        h.put_file(CA_PATH, tls["ca"])
    assert wait_healthy() == "ok\n"

    ini = h.read_file(INI)
    h.put_file(CONFIG, external_config(host, secrets, host="db2.bingo.test"), mode=0o600)
    r = h.run([BIN, "bootstrap"], env=aws_env(moto_server), check=False, timeout=600)
    assert r.returncode == 1 and "hostname" in r.stdout.lower(), r.stdout + r.stderr
    assert h.read_file(INI) == ini  # nothing rendered for a server that failed its check
    h.put_file(CONFIG, external_config(host, secrets), mode=0o600)
