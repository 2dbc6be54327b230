"""bingo_health.py (bingo_host/health_wsgi*.py), the health check uWSGI loads around the app.

Loaded here the way uWSGI loads it on a host: its three files as render installs them, on the
path, in an interpreter where `application` is the app's module. Its database check runs
against a real MariaDB in the bootstrapped test host (tests/test_deploy.py, the outage too);
here: what it reads, what it answers without a working driver, the live path, the app's 500s
made 503s while the check fails (cached), and that every other request reaches the app untouched.
"""

from __future__ import annotations

import configparser
import json
import importlib.util
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from bingo_host import render
from bingo_host.config_file import load_config_text
from bingo_host.facts.platforms import PLATFORMS
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import resolve

SOURCE = Path(render.__file__).with_name("health_wsgi.py")


def install(where: Path) -> Path:
    """The wrapper's files as the host gets them (render.health_modules), in `where`; the entry's path."""
    where.mkdir(parents=True, exist_ok=True)
    for mf in render.health_modules():
        (where / Path(mf.path).name).write_text(mf.content)
    return where / "bingo_health.py"


@pytest.fixture
def wsgi_dir(tmp_path_factory, monkeypatch):
    """The installed wrapper's directory on sys.path (as the vassal's pythonpath), its modules
    fresh for each test."""
    where = tmp_path_factory.mktemp("wsgi")
    install(where)
    monkeypatch.syspath_prepend(str(where))
    for name in ("bingo_health_bind", "bingo_health_db"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return where


@pytest.fixture
def health(monkeypatch, tmp_path, wsgi_dir):
    """The module with a stand-in `application` whose app records what it was asked."""
    seen = []

    def app(environ, start_response):
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>catch-all</html>"]

    monkeypatch.setitem(sys.modules, "application", types.SimpleNamespace(app=app))
    monkeypatch.setenv("BINGO_HEALTH_PATH", "/api/health")
    monkeypatch.delenv("BINGO_LIVE_PATH", raising=False)
    spec = importlib.util.spec_from_file_location("bingo_health_under_test", wsgi_dir / "bingo_health.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.seen = seen
    monkeypatch.chdir(tmp_path)
    return module


def call(module, path, method="GET"):
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(module.application({"PATH_INFO": path, "REQUEST_METHOD": method}, start_response))
    return answer["status"], answer["headers"], body


def write_ini(release: Path, text: str, where: str = "musicbingo/bingo.ini") -> None:
    (release / where).parent.mkdir(parents=True, exist_ok=True)
    (release / where).write_text(text)


DB = "[database]\nprovider = mysql\nhost = localhost\nport = 3306\nname = bingo\nuser = app\n" \
     "passwd = p%%ss\nconnect_timeout = 10\n"


def test_other_paths_reach_the_app_untouched(health):
    status, headers, body = call(health, "/api/user")
    assert status == "200 OK" and body == b"<html>catch-all</html>"
    assert call(health, "/api/health", method="POST")[2] == b"<html>catch-all</html>"
    assert health.seen == ["/api/user", "/api/health"]


def test_no_driver_in_the_apps_environment_is_503_the_reason_logged_not_answered(health, tmp_path,
                                                                                capsys):
    # The test venv has PyMySQL but not mysqlclient: exactly the real app's failure when only
    # requirements.txt was installed (its driver is in mysql-requirements.txt).
    write_ini(tmp_path, DB)
    status, headers, body = call(health, "/api/health")
    assert status.startswith("503") and body == b"unavailable\n"
    assert headers["Cache-Control"] == "no-store" and health.seen == []
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["Content-Length"] == str(len(body))
    logged = capsys.readouterr()
    assert logged.out == ""
    assert logged.err == (f"bingo_health: /api/health unavailable (release {tmp_path.name}): "
                          "ModuleNotFoundError: No module named 'MySQLdb'\n")


def test_missing_ini_is_503(health, tmp_path, capsys):
    status, _, body = call(health, "/api/health")
    assert status.startswith("503") and body == b"unavailable\n"
    assert f"{tmp_path}/bingo.ini is missing or unreadable" in capsys.readouterr().err


def test_healthy_says_ok_and_nothing_else(health, monkeypatch, capsys):
    monkeypatch.setattr(health, "check_database", lambda release: {"ok": True, "latency_ms": 1.0})
    status, headers, body = call(health, "/api/health")
    assert (status, body, headers["Content-Length"]) == ("200 OK", b"ok\n", "3")
    assert call(health, "/api/health", method="HEAD")[2] == b""
    assert capsys.readouterr().err == ""


JOURNAL = ("*** Operational MODE: preforking ***\n"
           "bingo_health: /api/health unavailable (release d-OLD): (2003, 'old')\n"
           "WSGI app 0 (mountpoint='') ready\n"
           "bingo_health: /api/health unavailable (release d-NEW): No module named 'MySQLdb'\n"
           "[pid: 7] GET /api/health => generated 12 bytes\n")


@pytest.mark.parametrize("status, journal, why", [
    (503, JOURNAL, "HTTP 503: /api/health unavailable (release d-NEW): No module named 'MySQLdb'"),
    (503, "WSGI app 0 ready\n  bingo_health: indented, not the check's\n",
     "HTTP 503 (the health check logs why: journalctl -u bingo-uwsgi)"),
    (503, "", "HTTP 503 (the health check logs why: journalctl -u bingo-uwsgi)"),
    (502, JOURNAL, "HTTP 502"),
    (None, JOURNAL, "no answer (connection refused)"),
])
def test_a_failed_probe_says_the_logged_reason_never_what_the_body_said(status, journal, why, monkeypatch):
    """Root's probe (ValidateService, status) reads the reason where the health check logged it:
    the last `bingo_health: ` line of the app unit's journal; the body is never trusted."""
    from bingo_host.facts import http

    monkeypatch.setattr(http, "_health_log", lambda: journal)
    answer = http.Answer("http://localhost/api/health", status, body=b'{"database": {"error": "leak"}}',
                          error="connection refused" if status is None else None)
    assert answer.why() == why


def test_the_health_log_is_the_app_units_recent_journal_and_nothing_when_it_cannot_be_read(monkeypatch):
    from bingo_host import subp
    from bingo_host.errors import CommandError
    from bingo_host.facts import http

    ran = []
    monkeypatch.setattr(subp, "run", lambda argv, **kw: ran.append((argv, kw)) or subp.Result(argv, 0, "x\n", ""))
    assert http._health_log() == "x\n"
    assert ran[0][0][:3] == ["journalctl", "-u", "bingo-uwsgi"] and "--since" in ran[0][0]
    assert "-n" not in ran[0][0]  # with --since it keeps the oldest lines, not the newest reason
    monkeypatch.setattr(subp, "run", lambda argv, **kw: (_ for _ in ()).throw(CommandError("journalctl", 127, "")))
    assert http._health_log() == ""


def test_connect_arguments_as_the_app_would_connect(health):
    ini = configparser.ConfigParser()
    ini.read_string(DB + 'ssl = {"ssl_ca": "/etc/ssl/rds.pem", "ssl_mode": "VERIFY_IDENTITY"}\n')
    module, args = health.connect_args(ini["database"])
    assert module == "MySQLdb"
    # The app puts [database] ssl into its SQLAlchemy URL (dropping ssl_mode), and SQLAlchemy
    # makes ssl_* keys the driver's ssl={...}: health connects the same way.
    assert args == {"host": "localhost", "user": "app", "passwd": "p%ss", "db": "bingo",
                    "connect_timeout": 3, "port": 3306, "ssl": {"ca": "/etc/ssl/rds.pem"}}
    assert health.ssl_args({"ssl_check_hostname": "true", "ca": "/x.pem", "ssl_key": ""}) == \
        {"ca": "/x.pem", "ssl": {"check_hostname": True}}  # "ca" reaches the driver as the app passes it
    ini.read_string("[database]\nprovider = mysql+pymysql\n")
    assert health.connect_args(ini["database"])[0] == "pymysql"
    ini.read_string("[database]\nprovider = sqlite\n")
    with pytest.raises(ValueError):
        health.connect_args(ini["database"])


def test_ini_where_the_app_reads_it(health, tmp_path):
    write_ini(tmp_path, DB, where="bingo.ini")  # an older app, without the musicbingo package
    assert health.ini_path(str(tmp_path)) == f"{tmp_path}/bingo.ini"
    (tmp_path / "musicbingo").mkdir()
    # The app reads only musicbingo/bingo.ini (without it, it falls back to sqlite): so does health.
    assert health.ini_path(str(tmp_path)) == f"{tmp_path}/musicbingo/bingo.ini"
    assert call(health, "/api/health")[0].startswith("503")


def test_rendered_ini_reads_back_as_the_app_reads_it():
    """A fetched password with '%' survives ConfigParser's interpolation, and the
    secret key is there, so the app never writes bingo.ini."""
    cfg = load_config_text("database:\n  password: ssm:/bingo/db\n")
    facts = HostFacts(512 * 1024**2, 2)
    files = render.render_all(resolve(cfg, PLATFORMS["debian12"], facts), PLATFORMS["debian12"], facts,
                              db_password="fetch%ed%%pw", secret_key="k%ey")
    ini = configparser.ConfigParser()
    ini.read_string(next(f for f in files if f.template == "bingo.ini").content)
    assert ini["database"]["passwd"] == "fetch%ed%%pw"
    assert ini["musicbingo"]["secret_key"] == "k%ey"
    # the app's own first account (admin/changeme) is off: the app reads only "true" as true
    assert ini["musicbingo"]["create_superuser"].lower() != "true"
    modules = {f.path: f.content for f in files if f.template.startswith("health_wsgi")}
    assert modules == {f"/opt/bingo-host/wsgi/{name}.py": SOURCE.with_name(source).read_text()
                       for source, name in (("health_wsgi.py", "bingo_health"),
                                            ("health_wsgi_bind.py", "bingo_health_bind"),
                                            ("health_wsgi_db.py", "bingo_health_db"))}
    vassal = next(f for f in files if f.template == "uwsgi-vassal.ini").content
    assert "module = bingo_health:application\n" in vassal
    assert "env = BINGO_HEALTH_PATH=/api/health\n" in vassal
    assert "env = BINGO_LIVE_PATH=/api/health/live\n" in vassal


@pytest.mark.parametrize("broken", [False, True])
def test_a_worker_imports_the_release_it_entered_or_exits(tmp_path, broken):
    """uWSGI's workers load bingo_health after entering the release (lazy-apps): the app comes
    from that directory, whatever the path held (-I: no entry for the working directory); an app
    that cannot be imported makes the worker exit non-zero with the traceback before it accepts a
    request (so a chain reload stops there), rather than raising to uWSGI, which would end every
    worker (need-app)."""
    release = tmp_path / "releases" / "d-NEW"
    release.mkdir(parents=True)
    (release / "application.py").write_text(
        "raise RuntimeError('broken on purpose')\n" if broken else "app = __file__\n")
    entry = install(tmp_path / "wsgi")
    probe = (f"import runpy, sys\nsys.path.insert(0, {str(entry.parent)!r})\n"
             f"try:\n    print(runpy.run_path({str(entry)!r})['app'])\n"
             "except BaseException as exc:\n    print('raised', exc)\n")
    r = subprocess.run([sys.executable, "-I", "-c", probe], cwd=release, capture_output=True,
                       text=True, timeout=60)
    if broken:
        assert r.returncode == 1 and "RuntimeError: broken on purpose" in r.stderr, r.stderr
        assert r.stdout == ""
    else:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{release}/application.py"


def test_the_first_request_goes_to_the_app_itself_and_not_at_import_outside_uwsgi(health):
    """Loaded outside uWSGI (as the tests load it) nothing is sent at import; its
    first_request reaches the app at the health path, which the wrapper would answer itself."""
    assert health.seen == []
    assert health.first_request(health.app, "/api/health") == "200 OK"
    assert health.seen == ["/api/health"]


def test_a_uwsgi_worker_warms_the_app_before_a_users_request_the_master_after_the_fork(
        health, monkeypatch, wsgi_dir):
    bind = lambda: health.bind_in_master(health.app, health.HEALTH_PATH)  # noqa: E731
    health.warm_in_uwsgi(types.SimpleNamespace(worker_id=lambda: 2), bind, health.warm)  # lazy-apps
    assert health.seen == ["/api/health"]
    ran = []
    master = types.SimpleNamespace(worker_id=lambda: 0, post_fork_hook=lambda: ran.append("app's"))
    health.warm_in_uwsgi(master, bind, health.warm)
    assert health.seen == ["/api/health"] and ran == []  # the first bind ran in a child, not here
    master.post_fork_hook()
    assert ran == ["app's"] and health.seen == ["/api/health"] * 2
    # loaded by uWSGI's embedded interpreter (it has the `uwsgi` module): warmed at import
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(worker_id=lambda: 1))
    spec = importlib.util.spec_from_file_location("bingo_health_in_uwsgi", wsgi_dir / "bingo_health.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert health.seen == ["/api/health"] * 3


def test_a_failed_warm_up_is_logged_and_the_worker_serves_on(health, monkeypatch, capsys):
    def failing(environ, start_response):
        start_response("500 INTERNAL SERVER ERROR", [])
        return [b""]

    monkeypatch.setattr(health, "app", failing)
    health.warm_up(health.app, health.HEALTH_PATH)
    assert capsys.readouterr().err == ("bingo_health: warm-up GET /api/health answered "
                                       "500 INTERNAL SERVER ERROR\n")

    def raising(environ, start_response):
        raise RuntimeError("no database")

    monkeypatch.setattr(health, "app", raising)
    health.warm_up(health.app, health.HEALTH_PATH)
    err = capsys.readouterr().err
    assert err.endswith("bingo_health: warm-up GET /api/health answered no answer: RuntimeError: "
                        "no database\n") and "Traceback" in err


def test_a_uwsgi_process_exit_runs_what_the_skipped_teardown_would_the_app_can_tell(tmp_path):
    """The vassal skips the interpreter's teardown (skip-atexit-teardown); uwsgi.atexit still
    runs the app's own uwsgi.atexit, joins its non-daemon threads, runs its atexit handlers and
    flushes its output (os._exit after: nothing else would)."""
    (tmp_path / "application.py").write_text("app = None\n")
    entry = install(tmp_path / "wsgi")
    probe = f"""
import atexit, importlib.util, os, sys, threading, time, types
sys.path.insert(0, {str(entry.parent)!r})
uwsgi = types.SimpleNamespace(worker_id=lambda: 1, atexit=lambda: print("app's uwsgi.atexit"))
spec = importlib.util.spec_from_file_location("bingo_health", {str(entry)!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
atexit.register(print, "app's atexit handler")
threading.Thread(target=lambda: (time.sleep(0.3), print("app's thread done"))).start()
m.exit_in_uwsgi(uwsgi)
print("buffered")
uwsgi.atexit()
os._exit(0)
"""
    r = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["buffered", "app's uwsgi.atexit", "app's thread done",
                                     "app's atexit handler"]


def test_the_vassals_env_comes_from_uwsgi_opt_which_pyuwsgi_fills_after_os_environ(monkeypatch, wsgi_dir):
    """pyuwsgi's interpreter runs before uWSGI reads the vassal's `env =` lines: os.environ has
    none of them, uwsgi.opt has them all (one value, or a list when repeated)."""
    monkeypatch.setitem(sys.modules, "application", types.SimpleNamespace(app=None))
    monkeypatch.delenv("BINGO_HEALTH_PATH", raising=False)
    monkeypatch.delenv("BINGO_LIVE_PATH", raising=False)
    monkeypatch.setenv("BINGO_FIRST_BIND_RECORD", "/from/os.environ")
    for env, path, live, record in (
            ([b"BINGO_HEALTH_PATH=/healthz", b"BINGO_FIRST_BIND_RECORD=/run/x/blue.bind", b"BINGO_LIVE_PATH=/l"],
             "/healthz", "/l", "/run/x/blue.bind"),
            (b"BINGO_HEALTH_PATH=/h", "/h", "/api/health/live", "/from/os.environ"),
            (None, "/api/health", "/api/health/live", "/from/os.environ")):
        opt = {} if env is None else {"env": env}
        monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt=opt))
        monkeypatch.delitem(sys.modules, "bingo_health_bind", raising=False)
        source = SOURCE.read_text().split('\nif "uwsgi" in sys.modules:')[0]  # not the first bind's fork
        module = {"__name__": "bingo_health_env"}
        exec(compile(source, str(SOURCE), "exec"), module)
        bind_record = sys.modules["bingo_health_bind"].BIND_RECORD
        assert (module["HEALTH_PATH"], module["LIVE_PATH"], bind_record) == (path, live, record)


# -- the live path and the app's 500s while the database is down (issue 23) --

def app_answering(status: str, closed: list):
    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/html")])
        return Body([b"the app's own " + status.encode()])
    return app


def checks(health, monkeypatch, *answers):
    """check_database answering `answers` in turn (the last one for ever); the calls made."""
    made = []

    def check(release):
        made.append(release)
        return answers[min(len(made), len(answers)) - 1]
    monkeypatch.setattr(health, "check_database", check)
    return made


DOWN = {"ok": False, "error": "OperationalError: (2003, \"Can't connect to MySQL server on 'db.internal'\")"}
UP = {"ok": True, "latency_ms": 1.0}


def test_the_live_path_answers_from_the_worker_without_the_database_or_the_app(health, monkeypatch):
    made = checks(health, monkeypatch, DOWN)
    status, headers, body = call(health, "/api/health/live")
    assert (status, body, headers["Content-Length"], headers["Cache-Control"]) == \
        ("200 OK", b"alive\n", "6", "no-store")
    assert call(health, "/api/health/live", method="HEAD")[2] == b""
    assert made == [] and health.seen == []
    assert call(health, "/api/health/live", method="POST")[2] == b"<html>catch-all</html>"
    assert call(health, "/api/health")[0].startswith("503")  # the deep check still asks the database


def test_the_apps_500_is_a_503_while_the_database_is_down_the_reason_logged_once(health, monkeypatch, capsys):
    closed = []
    monkeypatch.setattr(health, "app", app_answering("500 INTERNAL SERVER ERROR", closed))
    made = checks(health, monkeypatch, DOWN)
    for _ in range(5):  # a burst: one check
        status, headers, body = call(health, "/api/user")
        assert status == "503 Service Unavailable" and headers["Retry-After"] == "5"
        assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == str(len(body))
        assert json.loads(body) == {"error": "temporarily unavailable, try again in a few seconds"}
    assert len(made) == 1 and closed == [True] * 5
    assert call(health, "/api/user", method="HEAD")[2] == b""
    err = capsys.readouterr().err
    assert err.count("bingo_health: 503 for GET /api/user") == 1 and "db.internal" in err


def test_the_apps_500_is_untouched_while_the_database_answers_and_a_200_is_never_checked(
        health, monkeypatch, capsys):
    made = checks(health, monkeypatch, UP)
    monkeypatch.setattr(health, "app", app_answering("500 INTERNAL SERVER ERROR", []))
    assert call(health, "/api/user")[::2] == ("500 INTERNAL SERVER ERROR", b"the app's own 500 INTERNAL SERVER ERROR")
    assert len(made) == 1
    monkeypatch.setattr(health, "app", app_answering("200 OK", []))
    monkeypatch.setattr(health, "database", health.Cached(health.check_database))
    assert call(health, "/api/user")[::2] == ("200 OK", b"the app's own 200 OK")
    assert len(made) == 1 and capsys.readouterr().err == ""


def test_the_database_check_is_cached_for_a_second_and_never_twice_in_flight(health):
    now, made, release = [100.0], [], threading.Event()

    def slow(where):
        made.append(where)
        release.wait(5)
        return DOWN
    cached = health.Cached(slow, ttl=1.0, clock=lambda: now[0])
    threads = [threading.Thread(target=cached.get, args=("r",)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert made == ["r"]
    now[0] += 0.99
    assert cached.get("r") == (DOWN, False) and made == ["r"]
    now[0] += 0.01
    assert cached.get("r") == (DOWN, True) and made == ["r", "r"]


def test_a_worker_whose_first_bind_failed_in_an_outage_leaves_once_the_database_is_back(
        health, monkeypatch, capsys):
    left = []
    monkeypatch.setattr(health, "leave", lambda: left.append(True))
    monkeypatch.setattr(health, "app", app_answering("500 INTERNAL SERVER ERROR", []))
    monkeypatch.setattr(health.database, "ttl", 0)
    checks(health, monkeypatch, DOWN, DOWN, UP)
    health.warm()  # the worker's first bind fails: the database is down
    assert call(health, "/api/user")[0].startswith("503") and left == []
    status, headers, _ = call(health, "/api/user")  # back: the worker leaves after this request
    assert status.startswith("503") and headers["Retry-After"] == "5" and left == [True]
    assert "it leaves after this request" in capsys.readouterr().err
    assert call(health, "/api/user")[0].startswith("500") and left == [True]  # once


def test_a_worker_whose_warm_up_failed_with_the_database_up_never_leaves(health, monkeypatch):
    """A 500 the database does not explain (the app's own bug) is the app's: no respawn loop."""
    left = []
    monkeypatch.setattr(health, "leave", lambda: left.append(True))
    monkeypatch.setattr(health, "app", app_answering("500 INTERNAL SERVER ERROR", []))
    monkeypatch.setattr(health.database, "ttl", 0)
    checks(health, monkeypatch, UP)
    health.warm()
    assert call(health, "/api/user")[0].startswith("500") and left == []
