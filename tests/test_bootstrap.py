"""`bingo-host bootstrap` on a real systemd test host, asserted with testinfra."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import CONFIG, host_config


@pytest.fixture
def ti(bootstrapped):
    return bootstrapped.host.testinfra


def test_first_bootstrap_converges(bootstrapped):
    out = bootstrapped.first.stdout
    assert bootstrapped.first.returncode == 0, out + bootstrapped.first.stderr
    assert "bootstrap: converged" in out


@pytest.mark.parametrize("service", ["nginx", "mariadb", "bingo-uwsgi", "bingo-host-snapshot.timer"])
def test_services_active_and_enabled(ti, service):
    svc = ti.service(service)
    assert svc.is_running
    assert svc.is_enabled


def test_uwsgi_emperor_spawns_a_vassal_dropped_into_its_directory(bootstrapped, ti):
    """The emperor must watch a directory (one started before it exists never spawns a vassal)."""
    import time

    host = bootstrapped.host
    host.put_file("/tmp/probe_app.py",
                  "def application(env, start):\n"
                  "    start('200 OK', [('Content-Type', 'text/plain')])\n"
                  "    return [b'emperor-probe']\n")
    host.put_file("/etc/bingo-host/vassals/probe.ini",
                  "[uwsgi]\nhttp-socket = 127.0.0.1:18099\nwsgi-file = /tmp/probe_app.py\n"
                  "binary-path = /opt/bingo-host/uwsgi/bin/python\nuid = nobody\ngid = nogroup\n")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = ti.run("curl -s http://127.0.0.1:18099/")
            if answer.stdout == "emperor-probe":
                break
            time.sleep(0.5)
        assert answer.stdout == "emperor-probe"
    finally:
        host.run(["rm", "-f", "/etc/bingo-host/vassals/probe.ini"])


def test_data_volume_mounted_by_uuid_from_fstab(bootstrapped, ti):
    uuid = ti.run(f"blkid -s UUID -o value {bootstrapped.volume.device}").stdout.strip()
    label = ti.run(f"blkid -s LABEL -o value {bootstrapped.volume.device}").stdout.strip()
    assert uuid and label == "bingo-db"
    fstab = ti.file("/etc/fstab").content_string
    line = next(ln for ln in fstab.splitlines() if "/var/lib/mysql" in ln)
    assert line.startswith(f"UUID={uuid} /var/lib/mysql ext4 ")
    assert "nofail" in line and "# bingo-host" in line
    mount = ti.mount_point("/var/lib/mysql")
    assert mount.exists and mount.filesystem == "ext4"
    assert mount.device == bootstrapped.volume.device


def test_mariadb_datadir_is_on_the_volume(ti):
    datadir = ti.run("mariadb -N -B -e 'SELECT @@datadir'").stdout.strip()
    assert datadir.rstrip("/") == "/var/lib/mysql/data"
    assert ti.file("/var/lib/mysql/data/mysql").is_directory
    assert ti.run("mariadb -N -B -e 'SELECT @@bind_address'").stdout.strip() == "127.0.0.1"


def test_swap_is_on(ti):
    swaps = ti.file("/proc/swaps").content_string
    assert "/swapfile" in swaps
    assert ti.file("/swapfile").mode == 0o600
    assert any(ln.startswith("/swapfile ") and "swap" in ln for ln in ti.file("/etc/fstab").content_string.splitlines())


def test_secrets_are_private_and_never_logged(ti):
    secrets = ("/etc/bingo-host/db-password", "/etc/bingo-host/db-backup-password",
               "/etc/bingo-host/app-secret-key")
    for path in secrets:
        f = ti.file(path)
        assert f.mode == 0o600 and f.user == "root"
    ini = ti.file("/var/www/music-bingo/shared/bingo.ini")
    assert ini.mode == 0o640 and ini.user == "root" and ini.group == "music-bingo"
    password = ti.file("/etc/bingo-host/db-password").content_string.strip()
    assert f"passwd = {password}" in ini.content_string
    # The app's secret_key is rendered, so the app never rewrites bingo.ini to invent one.
    key = ti.file("/etc/bingo-host/app-secret-key").content_string.strip()
    assert len(key) >= 32 and f"secret_key = {key}\n" in ini.content_string
    journal = ti.run("journalctl --no-pager -o cat").stdout
    for path in secrets:
        assert ti.file(path).content_string.strip() not in journal


def app_sql(ti, sql, database="bingo"):
    password = ti.file("/etc/bingo-host/db-password").content_string.strip()
    cmd = ti.run("MYSQL_PWD=%s mariadb -u bingoapp -N -B %s -e %s", password, database, sql)
    return cmd


def test_app_user_reaches_its_database_and_nothing_else(ti):
    ok = app_sql(ti, "CREATE TABLE IF NOT EXISTS probe (id INT); SELECT COUNT(*) FROM probe")
    assert ok.rc == 0, ok.stderr
    assert app_sql(ti, "SELECT COUNT(*) FROM mysql.user").rc != 0
    assert app_sql(ti, "CREATE DATABASE other").rc != 0
    grants = app_sql(ti, "SHOW GRANTS").stdout
    assert "ALL PRIVILEGES ON `bingo`.*" in grants and "ON *.*" in grants  # USAGE only
    assert re.search(r"GRANT (?!USAGE)\S.* ON \*\.\*", grants) is None


def test_accounts_of_a_reattached_datadir_are_reported_then_removed(bootstrapped, ti):
    """What an old datadir can bring along: an account bingo-host never made, a role, and an app
    account with global privileges (the same rows in mysql.user as a reattached volume's)."""
    host = bootstrapped.host
    host.run(["mariadb", "-e", "CREATE USER 'olduser'@'%' IDENTIFIED BY 'Old-Passw0rd-123'; "
                               "CREATE ROLE oldrole; GRANT ALL PRIVILEGES ON *.* TO oldrole; "
                               "GRANT ALL PRIVILEGES ON *.* TO bingoapp@localhost WITH GRANT OPTION; "
                               "GRANT oldrole TO bingoapp@localhost; "
                               "SET DEFAULT ROLE oldrole FOR bingoapp@localhost"])
    try:
        first = bootstrapped.bingo("bootstrap")
        assert first.returncode == 0, first.stdout + first.stderr
        assert re.search(r"^mariadb\s+changed\s+revoke bingoapp's ALL PRIVILEGES ON \*\.\*, GRANT OPTION "
                         r"ON \*\.\*, role `oldrole`; grant bingoapp ALL PRIVILEGES ON `bingo`\.\*$",
                         first.stdout, re.M), first.stdout
        warning = (r"^mariadb\s+warning\s+database accounts bingo-host did not create: role 'oldrole', "
                   r"'olduser'@'%'; review them, or remove them with `bingo-host bootstrap "
                   r"--remove-unknown-db-accounts`$")
        assert re.search(warning, first.stdout, re.M), first.stdout
        grants = app_sql(ti, "SHOW GRANTS").stdout
        assert re.search(r"GRANT (?!USAGE)\S.* ON \*\.\*|oldrole|GRANT OPTION", grants) is None, grants
        assert app_sql(ti, "SET ROLE oldrole").rc != 0

        status = bootstrapped.bingo("status", "--json")
        assert status.returncode == 1
        report = json.loads(status.stdout)
        assert report["database"]["unknown_accounts"] == ["role 'oldrole'", "'olduser'@'%'"]
        assert [p["severity"] for p in report["problems"] if p["check"] == "database.accounts"] == ["warning"]

        plan = bootstrapped.bingo("bootstrap", "--dry-run", "--remove-unknown-db-accounts")
        assert re.search(r"^mariadb\s+would change\s+drop database role 'oldrole' \(bingo-host did not "
                         r"create it\); drop database 'olduser'@'%'", plan.stdout, re.M), plan.stdout
        assert "olduser" in ti.run("mariadb -N -B -e 'SELECT User FROM mysql.user'").stdout

        removed = bootstrapped.bingo("bootstrap", "--remove-unknown-db-accounts")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        users = ti.run("mariadb -N -B -e 'SELECT User FROM mysql.user'").stdout.split()
        assert sorted(users) == ["bingoapp", "bingobackup", "bingodump", "bingorestore", "mariadb.sys",
                                 "mysql", "root"]
        again = bootstrapped.bingo("bootstrap")
        assert "already converged" in again.stdout and "warning" not in again.stdout, again.stdout
        assert json.loads(bootstrapped.bingo("status", "--json").stdout)["database"]["unknown_accounts"] == []
    finally:
        host.run(["mariadb", "-e", "DROP USER IF EXISTS 'olduser'@'%'; DROP ROLE IF EXISTS oldrole"])
        bootstrapped.bingo("bootstrap")


def test_root_uses_the_unix_socket_only(ti):
    assert ti.run("mariadb -N -B -e 'SELECT 1'").stdout.strip() == "1"  # OS root, no password
    assert ti.run("mariadb -u root -h 127.0.0.1 --password=guess -e 'SELECT 1'").rc != 0
    assert ti.run("su -s /bin/sh nobody -c \"mariadb -u root -e 'SELECT 1'\"").rc != 0


def test_app_runs_as_a_dedicated_system_user_that_owns_nothing(bootstrapped, ti):
    host = bootstrapped.host
    name, _, uid, gid, _, home, shell = ti.run("getent passwd music-bingo").stdout.strip().split(":")
    assert int(uid) < 1000 and home == "/var/www/music-bingo" and shell == "/usr/sbin/nologin"
    assert ti.run("id -nG music-bingo").stdout.split() == ["music-bingo"]  # no sudo, no other group
    owned = ti.run("find /var/www/music-bingo /etc /opt/bingo-host /var/lib/bingo-host /var/lib/mysql "
                   "/run -xdev -user music-bingo")
    assert owned.stdout.strip() == ""
    shared = ti.file("/var/www/music-bingo/shared")
    assert (shared.user, shared.group, shared.mode) == ("root", "music-bingo", 0o750)

    def as_app(command):
        return ti.run("su -s /bin/sh music-bingo -c %s", command)

    assert as_app("cat /var/www/music-bingo/shared/bingo.ini").rc == 0  # through its group
    # bootstrap's lock, like every lock: root's alone, so the app cannot hold it to block runs
    locks = ti.file("/run/bingo-host")
    assert (locks.user, locks.mode, ti.file("/run/bingo-host/host.lock").mode) == ("root", 0o700, 0o600)
    assert as_app("flock -n /run/bingo-host/host.lock true").rc != 0
    for where in ("shared/bingo.ini", "shared/new", "releases/new", "current/new"):
        assert as_app(f"echo x >> /var/www/music-bingo/{where}").rc != 0, where
    # A host whose files the app user owned (bingo-host before 0.x, or a hand edit) is healed.
    host.run(["chown", "-R", "music-bingo:music-bingo", "/var/www/music-bingo/shared"])
    healed = bootstrapped.bingo("bootstrap")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "set /var/www/music-bingo/shared to 0750 root:music-bingo" in healed.stdout
    assert ti.file("/var/www/music-bingo/shared/bingo.ini").user == "root"


@pytest.mark.parametrize("app, why", [
    ({"user": "opsadmin"}, "app.user: opsadmin is in the sudo group, whose members can become root"),
    ({"user": "deployer"}, "app.user: deployer may run commands through sudo (`sudo -l -U deployer`: "
                           "(ALL) NOPASSWD: ALL)"),
    # a %group rule: no sudoers line names the user, sudo's own answer does
    ({"user": "opsmember"}, "app.user: opsmember may run commands through sudo (`sudo -l -U opsmember`: "
                            "(ALL : ALL) ALL)"),
    ({"user": "svcbot"}, "app.user: svcbot is a system account (uid "),
    ({"name": "opsadmin"}, "app.name: the app runs as the user named after it, opsadmin, which is "
                           "in the sudo group"),
])
def test_an_app_user_that_could_become_root_is_refused(bootstrapped, ti, app, why):
    host = bootstrapped.host
    # Names the config check cannot know: the accounts on this host say why (root, mysql and
    # nginx's user are refused by name already: test_config's HOSTILE table).
    host.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "opsadmin"])
    host.run(["useradd", "--create-home", "--shell", "/bin/bash", "deployer"])
    host.put_file("/etc/sudoers.d/90-deployer", "deployer ALL=(ALL) NOPASSWD:ALL\n", mode=0o440)
    host.run(["groupadd", "opsteam"])
    host.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "opsteam", "opsmember"])
    host.put_file("/etc/sudoers.d/91-opsteam", "%opsteam ALL=(ALL:ALL) ALL\n", mode=0o440)
    host.run(["useradd", "--system", "--shell", "/bin/bash", "svcbot"])

    def snapshot():
        return ti.run("ls -la --time-style=full-iso /var/www/music-bingo/shared /etc/bingo-host/vassals "
                      "/etc/nginx/conf.d; sha256sum /etc/passwd /etc/group "
                      "/var/www/music-bingo/shared/bingo.ini").stdout

    before = snapshot()
    try:
        host.put_file(CONFIG, host_config(bootstrapped.volume.device, app=app), mode=0o600)
        for command in (["bootstrap"], ["config", "check"]):
            result = bootstrapped.bingo(*command)
            assert result.returncode == 2, result.stdout + result.stderr
            assert why in result.stderr
        assert snapshot() == before  # nothing changed, no user created
    finally:
        host.put_file(CONFIG, host_config(bootstrapped.volume.device), mode=0o600)
        host.run(["rm", "/etc/sudoers.d/90-deployer", "/etc/sudoers.d/91-opsteam"])
        for user in ("opsadmin", "deployer", "svcbot", "opsmember"):
            host.run(["userdel", "--remove", user], check=False)
        host.run(["groupdel", "opsteam"], check=False)


def test_placeholder_page_served_through_nginx(ti):
    page = ti.run("curl -s -i http://127.0.0.1/")
    assert "200 OK" in page.stdout
    assert "no release has been deployed yet" in page.stdout
    assert "X-Content-Type-Options: nosniff" in page.stdout
    assert not ti.file("/etc/nginx/sites-enabled/default").exists


def test_second_bootstrap_changes_nothing(bootstrapped):
    again = bootstrapped.bingo("bootstrap")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already converged, nothing changed" in again.stdout
    assert not re.search(r"^\S+\s+changed\s", again.stdout, re.M)


def test_runs_are_logged_to_the_journal(bootstrapped, ti):
    journal = ti.run("journalctl --no-pager -o cat -t bingo-host").stdout
    assert "initialise a new MariaDB datadir" in journal
    assert "start nginx.service" in journal
    # with fields (journald's native protocol): which command, which module, how the run ended
    import json

    entries = [json.loads(line) for line in ti.run(
        "journalctl --no-pager -o json -t bingo-host COMMAND=bootstrap").stdout.splitlines()]
    assert any(e.get("LOGGER") == "bingo_host.converge.engine" and "nginx" in e["MESSAGE"] for e in entries)
    ends = [e for e in entries if "OUTCOME" in e]
    assert ends and ends[0]["OUTCOME"] == "ok" and ends[0]["EXIT_STATUS"] == "0", ends
    assert ends[0]["MESSAGE"] == "bootstrap: ok" and ends[0]["PRIORITY"] == "6"


def test_a_concurrent_run_waits_for_the_lock(bootstrapped):
    import time

    holder = bootstrapped.host.popen(["flock", "/run/bingo-host/host.lock", "sleep", "3"])
    try:
        time.sleep(0.5)
        start = time.monotonic()
        result = bootstrapped.bingo("bootstrap")
        waited = time.monotonic() - start
    finally:
        holder.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for another bingo-host run to finish" in result.stdout
    assert waited >= 2


def test_dry_run_shows_the_plan_and_changes_nothing(bootstrapped, ti):
    host = bootstrapped.host
    site = "/etc/nginx/conf.d/music-bingo.conf"
    before = ti.file(site).sha256sum
    host.put_file("/tmp/dry.yaml", host_config(bootstrapped.volume.device,
                                               musicbingo={"columns": 6}, snapshots={"enabled": False}))
    plan = bootstrapped.bingo("--config", "/tmp/dry.yaml", "bootstrap", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "would change" in plan.stdout and "disable --now bingo-host-snapshot.timer" in plan.stdout
    assert "update /var/www/music-bingo/shared/bingo.ini" in plan.stdout
    assert ti.file(site).sha256sum == before
    assert "columns = 5" in ti.file("/var/www/music-bingo/shared/bingo.ini").content_string
    assert ti.service("bingo-host-snapshot.timer").is_enabled


def test_bad_config_exits_2_and_changes_nothing(bootstrapped, ti):
    bootstrapped.host.put_file("/tmp/bad.yaml", "database: {name: 'bingo; DROP DATABASE bingo'}\n")
    before = ti.file("/var/www/music-bingo/shared/bingo.ini").sha256sum
    result = bootstrapped.bingo("--config", "/tmp/bad.yaml", "bootstrap")
    assert result.returncode == 2
    assert "database.name: must be 1 to 64 letters, digits and _ (got 'bingo; DROP DATABASE bingo')" in result.stderr
    assert ti.file("/var/www/music-bingo/shared/bingo.ini").sha256sum == before


def test_conflicting_nginx_site_leaves_the_old_config_serving(bootstrapped, ti):
    host = bootstrapped.host
    site = "/etc/nginx/conf.d/music-bingo.conf"
    before = ti.file(site).content_string
    # Another site claims to be the default server too: nginx -t fails on any new config.
    host.put_file("/etc/nginx/conf.d/intruder.conf",
                  "server { listen 80 default_server; server_name _; return 418; }\n")
    try:
        host.put_file(CONFIG, host_config(bootstrapped.volume.device,
                                          app={"server_name": "bingo.example.com"}), mode=0o600)
        result = bootstrapped.bingo("bootstrap")
        assert result.returncode == 1
        assert "nginx" in result.stdout and "FAILED" in result.stdout
        assert "duplicate default server" in result.stdout + result.stderr
        assert ti.file(site).content_string == before  # restored
        assert ti.service("nginx").is_running
        page = ti.run("curl -s http://127.0.0.1/")
        assert "no release has been deployed yet" in page.stdout  # the old config still serves
    finally:
        host.run(["rm", "-f", "/etc/nginx/conf.d/intruder.conf"])
        host.put_file(CONFIG, host_config(bootstrapped.volume.device), mode=0o600)
    healed = bootstrapped.bingo("bootstrap")
    assert healed.returncode == 0, healed.stdout
    assert "already converged" in healed.stdout


@pytest.fixture
def external_db(bootstrapped):
    """The host's own MariaDB, seen as an external server: another name, TCP, its own user."""
    host = bootstrapped.host
    password = "Ext3rnal-Db-Passw0rd"
    host.run(["sh", "-c", "grep -q db.bingo.test /etc/hosts || echo '127.0.0.1 db.bingo.test' >> /etc/hosts"])
    host.run(["mariadb", "-e", f"CREATE USER IF NOT EXISTS 'extapp'@'127.0.0.1' IDENTIFIED BY '{password}'; "
                               "GRANT ALL PRIVILEGES ON bingo.* TO 'extapp'@'127.0.0.1'"])
    yield password
    host.run(["mariadb", "-e", "DROP USER IF EXISTS 'extapp'@'127.0.0.1'"])
    host.put_file(CONFIG, host_config(bootstrapped.volume.device), mode=0o600)
    back = bootstrapped.bingo("bootstrap")
    assert back.returncode == 0, back.stdout + back.stderr


def test_external_database_mode(bootstrapped, external_db, ti):
    host = bootstrapped.host
    external = {"host": "db.bingo.test", "user": "extapp", "password": external_db}
    host.put_file(CONFIG, host_config(bootstrapped.volume.device, database={**external, "password": "wrong-password-123"}),
                  mode=0o600)
    ini_before = ti.file("/var/www/music-bingo/shared/bingo.ini").sha256sum
    refused = bootstrapped.bingo("bootstrap")
    assert refused.returncode == 1
    assert re.search(r"^mariadb\s+failed\s+database extapp@db.bingo.test:3306/bingo does not answer: "
                     r"Access denied", refused.stdout, re.M), refused.stdout
    assert "wrong-password-123" not in refused.stdout + refused.stderr
    assert ti.file("/var/www/music-bingo/shared/bingo.ini").sha256sum == ini_before

    host.put_file(CONFIG, host_config(bootstrapped.volume.device, database=external), mode=0o600)
    result = bootstrapped.bingo("bootstrap")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^volume\s+unchanged\s+external database: no data volume", result.stdout, re.M)
    assert re.search(r"^mariadb\s+unchanged\s+external database extapp@db.bingo.test:3306/bingo answers",
                     result.stdout, re.M)
    assert "host = db.bingo.test" in ti.file("/var/www/music-bingo/shared/bingo.ini").content_string
