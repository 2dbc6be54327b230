"""The app's first database bind happens once, before any worker serves (issue 24).

The app (the fixture, as the real music bingo server) binds its database on each worker's first
request: it creates its tables, and the first account when the User table is empty and
`create_superuser` is on, unguarded. Right after a deploy onto an empty database every worker is
fresh, so concurrent first requests bind at once and all but one can fail (a table or the
account made twice): that request answers 500. Here a fresh host's first deploy, then redeploys
onto an emptied database, each followed by a burst of concurrent first requests to the fresh
workers: not one may fail. Without a kernel: a slot's master as the health wrapper runs one
(bingo_host/health_wsgi.py) against a stand-in release, and the record bingo-host reads
(bingo_host/deploy/first_bind.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
import types
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
    account) exist before any request reached a worker: the new slot master's first bind made them;
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
            took += re.findall(r"uwsgi: slot \w+ ready in ([0-9.]+) s", r.stdout)
            assert serving(host) == deployment_id
            assert tables(host) == "Game,User"
            assert admins(host) == ("1" if superuser else "0")
            deadline = time.monotonic() + 10  # the journal takes the workers' lines a moment later
            while binds(host) - before < WORKERS + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert binds(host) - before == WORKERS + 1  # the master's first bind, each worker's warm-up
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
    print(f"new slot ready in {', '.join(took)} s; each burst of {BURST} {', '.join(took_burst)} ms")
    assert len(took) == len(rounds)
    use_the_app("firstbind")


def test_a_release_whose_first_request_fails_is_never_switched_to(host, bundles):
    """One that cannot even be imported fails ApplicationStart with the app's own reason in one
    line, before nginx is pointed at it: the old release serves on and no worker ever loads the
    new one."""
    before = serving(host)
    r = host.run([BIN, "deploy", bundles.make("noimport", import_error="broken on purpose"),
                  "--deployment-id", "d-FBNOIMPORT"], env=ENV, check=False, timeout=1200)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the app's first request failed in d-FBNOIMPORT, so it is not switched to: " \
           "RuntimeError: broken on purpose" in r.stderr, r.stderr
    assert "music-bingo.sock -> slot" not in r.stdout and "[ValidateService]" not in r.stdout
    assert serving(host) == before and health_release(host) == before
    assert record(host, "d-FBNOIMPORT")["failed"]["event"] == "ApplicationStart"


# -- without a kernel --

HEALTH_WRAPPER = Path(render.__file__).with_name("health_wsgi.py")

# A stand-in for the app: binds on its first request (a line in `bound`: the path, the venv's
# name, the process), answers 500 with the traceback on wsgi.errors when `fail` exists (as Flask
# does with a before_request error), leaves a thread that never ends (as the app's scheduler may),
# and needs a module from its virtualenv. Its first request imports a library from the venv, a
# module of its own, and makes one up, as the app's database driver, its models and a lazy alias.
STAND_IN = """
import os, sys, threading, time, traceback, types
import from_the_venv
HERE = os.path.dirname(os.path.abspath(__file__))
threading.Thread(target=time.sleep, args=(3600,)).start()
def app(environ, start_response):
    import lazy_driver, own_models
    sys.modules.setdefault("made_up", types.ModuleType("made_up"))
    try:
        if os.path.exists(os.path.join(HERE, "fail")):
            raise RuntimeError(open(os.path.join(HERE, "fail")).read())
        with open(os.path.join(HERE, "bound"), "a") as f:
            f.write(f"{environ['PATH_INFO']} {from_the_venv.NAME} {os.getpid()}\\n")
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"index"]
    except Exception:
        print("[ERROR] Exception on " + environ["PATH_INFO"], file=environ["wsgi.errors"])
        traceback.print_exc(file=environ["wsgi.errors"])
        start_response("500 INTERNAL SERVER ERROR", [])
        return [b"error"]
"""

# A slot's master as uWSGI runs it, minus uWSGI: the `uwsgi` module (worker 0: the master), the
# release as working directory with its virtualenv on the path, the wrapper imported; then the
# fork's post-fork hook, as in a worker. It prints its own pid; os._exit: the app's thread.
MASTER = """
import glob, os, sys, types
release, wsgi = sys.argv[1:3]
uwsgi = types.SimpleNamespace(worker_id=lambda: 0)
sys.modules["uwsgi"] = uwsgi
sys.path[0:0] = [wsgi] + glob.glob(release + "/venv/lib/python3*/site-packages")
import bingo_health
print(os.getpid(), *(m for m in ("lazy_driver", "own_models", "made_up") if m in sys.modules), flush=True)
if os.environ.get("FORK_A_WORKER"):
    uwsgi.post_fork_hook()
os._exit(0)
"""


@pytest.fixture
def release(tmp_path):
    """releases/d-NEW with the stand-in app and a virtualenv's site-packages; the health wrapper
    installed as uWSGI loads it."""
    rel = tmp_path / "releases" / "d-NEW"
    site = rel / "venv" / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / "from_the_venv.py").write_text("NAME = 'venv'\n")
    (site / "lazy_driver.py").write_text("")
    (rel / "own_models.py").write_text("")
    (rel / "application.py").write_text(STAND_IN)
    wsgi = tmp_path / "wsgi"
    wsgi.mkdir()
    for source, name in layout.HEALTH_SOURCES.items():
        shutil.copy(HEALTH_WRAPPER.with_name(source), wsgi / f"{name}.py")
    return rel


def run_master(rel: Path, worker: bool = False) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "BINGO_HEALTH_PATH": "/api/health",
           "BINGO_FIRST_BIND_RECORD": str(rel.parent.parent / "blue.bind")}
    if worker:
        env["FORK_A_WORKER"] = "1"
    return subprocess.run([sys.executable, "-I", "-c", MASTER, str(rel), str(rel.parent.parent / "wsgi")],
                          cwd=rel, env=env, capture_output=True, text=True, timeout=30)


def bind_record(rel: Path) -> str:
    return (rel.parent.parent / "blue.bind").read_text()


def test_the_master_binds_once_in_a_child_before_any_worker_and_records_it(release):
    """The health path goes to the app object (the wrapper would answer it without the app), in
    the release with its virtualenv, in a process that is not the master (its connection is never
    a worker's); the app's threads do not keep that child alive; a worker then warms up itself."""
    r = run_master(release, worker=True)
    assert r.returncode == 0, r.stderr
    master = r.stdout.split()[0]
    assert bind_record(release) == "ok 200 OK\n"
    bound = (release / "bound").read_text().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in bound] == ["/api/health venv"] * 2
    assert bound[0].rsplit(" ", 1)[1] != master  # the child's
    assert bound[1].rsplit(" ", 1)[1] == master  # the worker's warm-up (here: the same process)


def test_the_master_imports_the_libraries_the_first_request_did_before_it_forks(release):
    """Its workers then share those pages (each imported its own copy: issue 24's PSS per
    worker); never the release's own modules (one may bind the database: a worker must not
    inherit the connection), and a name that cannot be imported is left to the workers."""
    r = run_master(release)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1:] == ["lazy_driver"]
    assert bind_record(release) == "ok 200 OK\n"


def test_a_5xx_first_request_is_recorded_with_the_apps_exception(release):
    (release / "fail").write_text("(MySQLdb.IntegrityError) (1062, \"Duplicate entry 'admin' for key "
                                  "'username'\")\n[SQL: INSERT INTO `User`]\n[parameters: ('admin',)]")
    r = run_master(release)
    assert r.returncode == 0, r.stderr
    assert bind_record(release) == ("failed RuntimeError: (MySQLdb.IntegrityError) (1062, \"Duplicate "
                                    "entry 'admin' for key 'username'\")\n")
    assert "bingo_health: first bind GET /api/health: failed RuntimeError" in r.stderr
    assert not (release / "bound").exists()


def test_a_release_that_cannot_be_imported_is_recorded_and_its_master_exits(release):
    (release / "application.py").write_text("raise RuntimeError('broken on purpose')\n")
    r = run_master(release)
    assert r.returncode == 1
    assert bind_record(release) == "failed RuntimeError: broken on purpose\n"


class Ctx:
    def __init__(self, root):
        self.cfg = types.SimpleNamespace(app=types.SimpleNamespace(name="music-bingo", root=str(root)))


def test_a_failed_record_fails_the_switch_masked_and_nothing_else_does(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "UWSGI_RUNTIME_DIR", str(tmp_path / "run"))
    record = Path(layout.slot_bind_record("music-bingo", "green"))
    record.parent.mkdir(parents=True)
    (tmp_path / "releases" / "d-NEW").mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/d-NEW")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "bingo.ini").write_text("[database]\npasswd = pw1\n")
    ctx = Ctx(tmp_path)
    first_bind.check(ctx, "green")  # no record yet
    record.write_text("ok 401 UNAUTHORIZED\n")
    first_bind.check(ctx, "green")
    record.write_text("failed OperationalError: (1045, \"Access denied for user 'bingo' (pw1)\")\n")
    with pytest.raises(DeployError) as exc:
        first_bind.check(ctx, "green")
    assert str(exc.value) == ("the app's first request failed in d-NEW, so it is not switched to: "
                              "OperationalError: (1045, \"Access denied for user 'bingo' (*****)\")")
    first_bind.forget("music-bingo", "green")
    first_bind.forget("music-bingo", "green")
    assert not record.exists()
    first_bind.check(ctx, "green")


def test_the_inis_secrets_are_masked_as_written_and_as_read(tmp_path):
    ini = tmp_path / "bingo.ini"
    ini.write_text("[musicbingo]\nsecret_key = k%%ey\nmode = x\n[database]\npasswd = pw1\nuser = bingo\n"
                   "[smtp]\npassword = \n")
    assert sorted(first_bind.ini_secrets(str(ini))) == ["k%%ey", "k%ey", "pw1"]
    assert first_bind.ini_secrets(str(tmp_path / "missing.ini")) == []
