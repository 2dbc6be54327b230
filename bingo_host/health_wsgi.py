"""The health check uWSGI serves in front of the music bingo app (installed as bingo_health.py,
with bingo_health_bind.py and bingo_health_db.py beside it).

The app answers every unknown path, its health path too, with 200 without touching the
database, so the vassal loads this module around ``application:app``. It answers two paths
itself and passes every other request through:
- ``BINGO_HEALTH_PATH``, the deep check (ValidateService, `status`, metrics): 200 `ok` only when
  a ``SELECT 1`` succeeds with the app's own settings and driver, else 503 `unavailable`;
- ``BINGO_LIVE_PATH``, the shallow one (what a load balancer's replacement decision asks):
  200 `alive` from this worker, never touching the database, so a shared database's outage
  never gets every instance replaced.
While the database is down the app answers 500 to what needs it; the wrapper makes that a 503
with Retry-After (the check cached: bingo_health_db.Cached). A worker whose first bind failed in
an outage answers 500 for ever (the app binds once per process): once the check passes again it
leaves after that request and uWSGI forks a fresh one, which binds. Reasons go to stderr (the
journal), never to the client: the paths are public and a reason names the database's host and
user. It runs inside the app's interpreter, so it uses the standard library only and is copied
to the host as files, not imported from bingo-host.
"""

import os
import signal
import sys
import traceback

# The wrapper's own modules first: nothing in a release can stand in for them.
from bingo_health_bind import (bind_in_master, exception_line, exit_in_uwsgi, first_request,  # noqa: F401
                               record_bind, vassal_env, warm_in_uwsgi, warm_up)
from bingo_health_db import Cached, check_database, connect_args, ini_path, ssl_args  # noqa: F401

# A slot's uWSGI master loads this once, after entering the release `current` points at (its
# workers are forks of it); the release joins the path by its real name, so a later import
# never follows `current` to another release.
sys.path.insert(0, os.getcwd())
try:
    from application import app
except BaseException:
    # A release that cannot be imported never serves: this master exits before it forks a worker,
    # so its slot never becomes ready and the serving slot keeps serving (deploy/slots.py).
    traceback.print_exc()
    sys.stderr.flush()
    record_bind(f"failed {exception_line(traceback.format_exc()) or 'the app could not be imported'}")
    os._exit(1)

HEALTH_PATH = vassal_env("BINGO_HEALTH_PATH", "/api/health")
LIVE_PATH = vassal_env("BINGO_LIVE_PATH", "/api/health/live")
RETRY_AFTER = "5"
UNAVAILABLE = b'{"error": "temporarily unavailable, try again in a few seconds"}\n'
database = Cached(lambda release: check_database(release))
state = {"bind_failed_in_outage": False}


def plain(start_response, status: str, body: bytes, method: str, extra=()):
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"),
                            ("Content-Length", str(len(body))), *extra])
    return [b"" if method == "HEAD" else body]


def database_down(release: str, why: str) -> bool:
    """Whether the cached check fails; a fresh failure's reason to the journal."""
    answer, fresh = database.get(release)
    if not answer["ok"] and fresh:
        print(f"bingo_health: {why} (release {os.path.basename(release)}): {answer['error']}",
              file=sys.stderr, flush=True)
    return not answer["ok"]


def leave() -> None:
    """End this worker after its request (SIGHUP: uWSGI's graceful end of one worker, as
    max-requests does); the master forks a fresh one."""
    os.kill(os.getpid(), signal.SIGHUP)


def guarded(environ, start_response):
    """The app's answer, but its 500 a 503 with Retry-After while the database check fails; a
    worker left broken by an outage leaves once the check passes (see the module's docstring)."""
    replaced = []
    release = os.getcwd()  # uWSGI's chdir: the release directory `current` pointed at when it loaded

    def start(status, headers, exc_info=None):
        if status[:3] == "500" and not replaced:
            if database_down(release, f"503 for {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"):
                replaced.append(status)
                return lambda data: None
            if state["bind_failed_in_outage"]:
                state["bind_failed_in_outage"] = False
                print("bingo_health: the database is back and this worker's first bind failed: "
                      "it leaves after this request", file=sys.stderr, flush=True)
                replaced.append(status)
                leave()
                return lambda data: None
        return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

    body = app(environ, start)
    if not replaced:
        return body
    getattr(body, "close", lambda: None)()
    start_response("503 Service Unavailable", [
        ("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Retry-After", RETRY_AFTER),
        ("Content-Length", str(len(UNAVAILABLE)))])
    return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else UNAVAILABLE]


def warm() -> None:
    """warm_up in this worker; a failure while the database is down marks the worker broken by
    the outage (its first bind failed)."""
    if not warm_up(app, HEALTH_PATH) and database_down(os.getcwd(), "warm-up failed, database down"):
        state["bind_failed_in_outage"] = True


def application(environ, start_response):
    method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
    if method not in ("GET", "HEAD") or path not in (HEALTH_PATH, LIVE_PATH):
        return guarded(environ, start_response)
    if path == LIVE_PATH:
        return plain(start_response, "200 OK", b"alive\n", method)
    release = os.getcwd()
    answer = check_database(release)
    if not answer["ok"]:
        print(f"bingo_health: {HEALTH_PATH} unavailable (release {os.path.basename(release)}): "
              f"{answer['error']}", file=sys.stderr, flush=True)
    if answer["ok"]:
        return plain(start_response, "200 OK", b"ok\n", method)
    return plain(start_response, "503 Service Unavailable", b"unavailable\n", method)


if "uwsgi" in sys.modules:  # only uWSGI's embedded interpreter has it
    exit_in_uwsgi(sys.modules["uwsgi"])
    warm_in_uwsgi(sys.modules["uwsgi"], lambda: bind_in_master(app, HEALTH_PATH), warm)
