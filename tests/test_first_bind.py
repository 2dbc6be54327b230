"""The app's first database bind happens once, before any worker serves (issue 24).

The app (the fixture, as the real music bingo server) binds its database on each worker's first
request: it creates its tables, and the first account when the User table is empty and
`create_superuser` is on, unguarded. Right after a deploy onto an empty database every worker is
fresh, so concurrent first requests bind at once and all but one can fail (a table or the
account made twice): that request answers 500. Here a fresh host's first deploy, then redeploys
onto an emptied database, each followed by a burst of concurrent first requests to the fresh
workers: not one may fail. Without a kernel: the runner (bingo_host/deploy/first_bind.py) against
a stand-in release loaded through the real health wrapper, and the pieces of its command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bingo_host import layout, render
from bingo_host.deploy import DeployError, first_bind
from tests.conftest import BIN, CONFIG, host_config
from tests.deploying import ENV, ROOT, Bundles, health_release, record, serving, use_the_app

WORKERS = 4  # app.processes, as 'auto' sizes the 24 GiB machine
BURST = 32  # concurrent first requests, several per fresh worker
INI = f"{ROOT}/shared/bingo.ini"


@pytest.fixture(scope="module")
def host(host_pool):
    host = host_pool.fresh()
    try:
        volume = host.attach_volume(size_mb=512)
        host.put_file(CONFIG, host_config(volume.device, app={"processes": WORKERS}), mode=0o600)
        r = host.run([BIN, "bootstrap"], check=False, timeout=1800)
        assert r.returncode == 0, r.stdout + r.stderr
        yield host
    finally:
        host.shutdown()


@pytest.fixture(scope="module")
def bundles(host, wheel, tmp_path_factory):
    return Bundles(host, wheel, tmp_path_factory.mktemp("bundles"))


def deploy(host, bundle: str, deployment_id: str):
    r = host.run([BIN, "deploy", bundle, "--deployment-id", deployment_id], env=ENV, check=False,
                 timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def burst(n: int = BURST) -> list[int]:
    """n GET /api/user at once (each on its own connection): the statuses, 0 for no answer.
    Without a token the app answers 401, after binding its database first (before_request)."""
    statuses = [0] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        try:
            with urllib.request.urlopen("http://127.0.0.1/api/user", timeout=30) as resp:
                statuses[i] = resp.status
        except urllib.error.HTTPError as exc:
            statuses[i] = exc.code
        except OSError:
            statuses[i] = 0

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def tables(host) -> str:
    return host.run(["mariadb", "-N", "-e", "SELECT GROUP_CONCAT(table_name ORDER BY table_name) FROM "
                     "information_schema.tables WHERE table_schema = 'bingo'"]).stdout.strip()


def admins(host) -> str:
    return host.run(["mariadb", "-N", "-e", "SELECT COUNT(*) FROM bingo.User WHERE username = 'admin'"]
                    ).stdout.strip()


def binds(host) -> int:
    """How many times a worker bound the app's database (the app prints a line each time)."""
    journal = host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager", "-o", "cat"]).stdout
    return sum(1 for line in journal.splitlines() if line.startswith("bind database: "))


def empty_database(host) -> None:
    """The app's database as before its first deploy: none of its tables."""
    host.run(["mariadb", "-e", "DROP TABLE IF EXISTS bingo.User, bingo.Game"])


def set_create_superuser(host, on: bool) -> None:
    """bingo.ini's create_superuser (bingo-host writes false; the app's default is true)."""
    ini = host.read_file(INI)
    old, new = ("false", "true") if on else ("true", "false")
    host.put_file(INI, ini.replace(f"\ncreate_superuser = {old}\n", f"\ncreate_superuser = {new}\n"),
                  mode=0o640)
    host.run(["chown", "root:music-bingo", INI])


def test_concurrent_first_requests_to_fresh_workers_never_fail(host, bundles):
    """A first deploy onto an empty database, then redeploys onto an emptied one (with the app's
    own default create_superuser too: the account made twice was the race the issue measured),
    and one onto the bound database (the same first bind again, harmless); after each, BURST
    concurrent first requests to the WORKERS new workers all answer 401. The tables (and the
    account) exist before any request reached a worker: ApplicationStart's first bind made them;
    and every new worker bound before a user's request reached it (the wrapper's warm-up)."""
    bundle = bundles.make("first-bind")
    rounds = [("d-FIRSTBIND1", False, True), ("d-FIRSTBIND3", True, True), ("d-FIRSTBIND4", True, True),
              ("d-FIRSTBIND5", True, False)]
    failed, took, took_burst = {}, [], []
    try:
        for i, (deployment_id, superuser, empty) in enumerate(rounds):
            if i and empty:
                empty_database(host)
            set_create_superuser(host, superuser)
            before = binds(host)
            r = deploy(host, bundle, deployment_id)
            took += re.findall(r"first bind: \S+ bound its database in one process \(([0-9.]+) s\)", r.stdout)
            assert serving(host) == deployment_id
            assert tables(host) == "Game,User"
            assert admins(host) == ("1" if superuser else "0")
            deadline = time.monotonic() + 10  # the journal takes the workers' lines a moment later
            while binds(host) - before < WORKERS and time.monotonic() < deadline:
                time.sleep(0.2)
            assert binds(host) - before == WORKERS
            started = time.monotonic()
            failed[deployment_id] = sorted(s for s in burst() if s != 401)
            took_burst.append(f"{(time.monotonic() - started) * 1000:.0f}")
    finally:
        set_create_superuser(host, False)
        host.run(["mariadb", "-e", "DELETE FROM bingo.User WHERE username = 'admin'"])
    journal = host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager", "-o", "cat"]).stdout
    errors = sorted({line for line in journal.splitlines()
                     if "IntegrityError" in line or "OperationalError" in line})[:5]
    assert all(not f for f in failed.values()), (failed, errors)
    print(f"first bind took {', '.join(took)} s; each burst of {BURST} {', '.join(took_burst)} ms")
    assert len(took) == len(rounds)
    use_the_app("firstbind")


def test_a_release_whose_first_request_fails_is_never_switched_to(host, bundles):
    """One that cannot even be imported fails ApplicationStart with the app's own reason in one
    line, before the switch: the old release serves on and no worker ever loads the new one."""
    before = serving(host)
    r = host.run([BIN, "deploy", bundles.make("noimport", import_error="broken on purpose"),
                  "--deployment-id", "d-FBNOIMPORT"], env=ENV, check=False, timeout=1200)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the app's first request failed in d-FBNOIMPORT (exit 1), so it is not switched to: " \
           "RuntimeError: broken on purpose" in r.stderr, r.stderr
    assert "switch: " not in r.stdout and "[ValidateService]" not in r.stdout
    assert serving(host) == before and health_release(host) == before
    assert record(host, "d-FBNOIMPORT")["failed"]["event"] == "ApplicationStart"


# -- without a kernel --

HEALTH_WRAPPER = Path(render.__file__).with_name("health_wsgi.py")

# A stand-in for the app: binds on its first request (a line in `bound`), answers 500 with the
# traceback on wsgi.errors when `fail` exists (as Flask does with a before_request error), leaves a
# thread that never ends (as the app's scheduler may), and needs a module from its virtualenv.
STAND_IN = """
import os, threading, time, traceback
import from_the_venv
HERE = os.path.dirname(os.path.abspath(__file__))
threading.Thread(target=time.sleep, args=(3600,)).start()
def app(environ, start_response):
    try:
        if os.path.exists(os.path.join(HERE, "fail")):
            raise RuntimeError(open(os.path.join(HERE, "fail")).read())
        with open(os.path.join(HERE, "bound"), "a") as f:
            f.write(environ["PATH_INFO"] + " " + from_the_venv.NAME + "\\n")
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"index"]
    except Exception:
        print("[ERROR] Exception on " + environ["PATH_INFO"], file=environ["wsgi.errors"])
        traceback.print_exc(file=environ["wsgi.errors"])
        start_response("500 INTERNAL SERVER ERROR", [])
        return [b"error"]
"""


@pytest.fixture
def release(tmp_path):
    """releases/d-NEW with the stand-in app and a virtualenv's site-packages; the health wrapper
    installed as uWSGI loads it."""
    rel = tmp_path / "releases" / "d-NEW"
    site = rel / "venv" / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / "from_the_venv.py").write_text("NAME = 'venv'\n")
    (rel / "application.py").write_text(STAND_IN)
    wsgi = tmp_path / "wsgi"
    wsgi.mkdir()
    shutil.copy(HEALTH_WRAPPER, wsgi / f"{layout.HEALTH_MODULE}.py")
    return rel


def run_runner(rel: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-c", first_bind.RUNNER, str(rel),
                           str(rel.parent.parent / "wsgi"), layout.HEALTH_MODULE, "/api/health"],
                          cwd=rel, env={"PATH": "/usr/bin:/bin", "BINGO_HEALTH_PATH": "/api/health"},
                          capture_output=True, text=True, timeout=30)


def test_the_runner_sends_one_request_through_the_app_itself_and_again_harmlessly(release):
    """The health path goes to the app object (the wrapper would answer it without the app), in
    the release with its virtualenv; the app's threads do not keep the process alive; a second
    run (a second ApplicationStart of the same release) just binds again."""
    for _ in range(2):
        r = run_runner(release)
        assert r.returncode == first_bind.ANSWERED, r.stderr
        assert "first bind: GET /api/health answered 200 OK" in r.stderr
    assert (release / "bound").read_text() == "/api/health venv\n" * 2


def test_the_runner_fails_on_a_5xx_and_names_the_apps_exception(release):
    (release / "fail").write_text("(MySQLdb.IntegrityError) (1062, \"Duplicate entry 'admin' for key "
                                  "'username'\")\n[SQL: INSERT INTO `User`]\n[parameters: ('admin',)]")
    r = run_runner(release)
    assert r.returncode == first_bind.ERROR, r.stderr
    assert first_bind.app_error(r.stderr) == ("RuntimeError: (MySQLdb.IntegrityError) (1062, \"Duplicate "
                                              "entry 'admin' for key 'username'\")")
    assert not (release / "bound").exists()


def test_the_runner_fails_when_the_release_cannot_be_imported(release):
    (release / "application.py").write_text("raise RuntimeError('broken on purpose')\n")
    r = run_runner(release)
    assert r.returncode == 1
    assert first_bind.app_error(r.stderr) == "RuntimeError: broken on purpose"


def test_app_error_without_a_traceback_is_the_last_line():
    assert first_bind.app_error("x\nfirst bind: GET / answered 503 SERVICE UNAVAILABLE\n\n") == \
        "first bind: GET / answered 503 SERVICE UNAVAILABLE"
    assert first_bind.app_error("") == "no output"


def test_the_command_runs_as_the_app_user_in_a_clean_environment_never_as_root():
    scope = ["systemd-run", "--scope", "--"]
    argv = first_bind.command("/var/www/music-bingo/releases/d-1", "/api/health", 998, 997, scope)
    assert argv[:3] == scope
    assert argv[3:9] == ["setpriv", "--reuid=998", "--regid=997", "--init-groups", "--no-new-privs", "--"]
    assert argv[9:11] == ["env", "-i"] and "BINGO_HEALTH_PATH=/api/health" in argv
    assert argv[argv.index("-c") - 2:argv.index("-c")] == [f"{layout.UWSGI_VENV}/bin/python", "-I"]
    assert argv[-4:] == ["/var/www/music-bingo/releases/d-1", layout.HEALTH_WSGI_DIR,
                         layout.HEALTH_MODULE, "/api/health"]
    for uid, gid in ((0, 997), (998, 0)):
        with pytest.raises(DeployError, match="would run as root"):
            first_bind.command("/r", "/api/health", uid, gid, scope)


def test_the_sandbox_denies_the_metadata_service_when_the_firewall_is_on():
    scope = ["systemd-run", "--scope", "-p", "MemoryMax=100M", "--"]
    assert first_bind.sandbox(scope, False) == scope
    assert first_bind.sandbox([], True) == []
    assert first_bind.sandbox(scope, True) == [*scope[:-1], "-p",
                                               "IPAddressDeny=169.254.169.254 fd00:ec2::254", "--"]


def test_the_inis_secrets_are_masked_as_written_and_as_read(tmp_path):
    ini = tmp_path / "bingo.ini"
    ini.write_text("[musicbingo]\nsecret_key = k%%ey\nmode = x\n[database]\npasswd = pw1\nuser = bingo\n"
                   "[smtp]\npassword = \n")
    assert sorted(first_bind.ini_secrets(str(ini))) == ["k%%ey", "k%ey", "pw1"]
    assert first_bind.ini_secrets(str(tmp_path / "missing.ini")) == []
