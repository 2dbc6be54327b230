"""The health wrapper's first requests (installed as bingo_health_bind.py beside bingo_health.py;
standard library only: it runs inside the app's interpreter).

A slot's master, having imported the app, sends it its first request in a child process before
it forks a worker, so the app's tables and first account exist before workers can race to make
them (bind_in_master; bingo-host reads how it went: deploy/first_bind.py). Each worker then sends
the app a request of its own before it accepts a user's, who would otherwise wait for the app's
per-process bind (warm_up: 55-90 ms for the fixture on a fresh worker, against 1-4 ms after).
"""

import atexit
import contextlib
import importlib
import io
import os
import select
import signal
import sys
import threading
import time
import traceback


def vassal_env(name: str, default=None):
    """The vassal's `env = NAME=value` (pyuwsgi's interpreter starts before uWSGI reads the
    vassal: os.environ never has it; uwsgi.opt does), else os.environ's."""
    said = getattr(sys.modules.get("uwsgi"), "opt", {}).get("env", [])
    for item in said if isinstance(said, list) else [said]:
        key, _, value = (item.decode() if isinstance(item, bytes) else str(item)).partition("=")
        if key == name:
            return value
    return os.environ.get(name, default)


BIND_RECORD = vassal_env("BINGO_FIRST_BIND_RECORD")  # in the app user's runtime directory
BIND_TIMEOUT = 60  # s for the first request (bingo-host waits BINGO_HOST_LOAD_TIMEOUT, 90 s)


def record_bind(line: str) -> None:
    """BIND_RECORD's one line, `ok <status>` or `failed <reason>`, replaced whole."""
    if not BIND_RECORD:
        return
    tmp = f"{BIND_RECORD}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(" ".join(line.split())[:2000] + "\n")
        os.replace(tmp, BIND_RECORD)
    except OSError as exc:
        print(f"bingo_health: {BIND_RECORD}: {exc}", file=sys.stderr, flush=True)


def exception_line(text: str):
    """The exception line of the last traceback in text (a multi-line message's first line)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    after = lines[starts[-1] + 1:] if starts else []
    return next((line.strip() for line in after if line.strip() and not line[0].isspace()), None)


def first_request(app, path: str, errors=None) -> str:
    """One GET of `path` through the app itself (the wrapper would answer the health path without
    it), so the app's first-request path runs: its status line, or why there was none. What the
    app logs (wsgi.errors) and a traceback go to `errors`, else stderr."""
    errors = errors or sys.stderr
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": errors,
               "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(line)
        return lambda data: None

    try:
        body = app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            getattr(body, "close", lambda: None)()
    except Exception as exc:  # a WSGI app that raises instead of answering 500
        traceback.print_exc(file=errors)
        return f"no answer: {type(exc).__name__}: {exc}"
    return status[-1] if status else "no answer"


def answered(said: str) -> bool:
    return said[:1] in ("1", "2", "3", "4")


class Tee(io.StringIO):
    """wsgi.errors for the first bind: to stderr (the journal) and kept, for the app's reason."""

    def write(self, text):
        sys.stderr.write(text)
        return super().write(text)


def bind_child(app, path: str, out: int) -> None:
    """In the child: the first request; `ok <status>` or `failed <the app's exception or status>`,
    NUL and the libraries it imported, to `out`; never returns (os._exit: nothing of the master's)."""
    try:
        before, mine = set(sys.modules), os.getcwd() + os.sep  # the release's own code, not its venv
        said = first_request(app, path, errors := Tee())
        line = f"ok {said}" if answered(said) else f"failed {exception_line(errors.getvalue()) or said}"
        libraries = [name for name, mod in list(sys.modules.items()) if name not in before and not (
            (f := getattr(mod, "__file__", None) or "").startswith(mine) and not f.startswith(mine + "venv/"))]
        os.write(out, f"{line}\0{' '.join(libraries)}".encode("utf-8", "replace"))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def bind_in_master(app, path: str) -> None:
    """The app's first request, once, before any worker exists (see the module's docstring), in
    a child of the master, so that its database connection is never inherited by a worker; how
    it went to BIND_RECORD and, when it failed, to the journal. Then the libraries that request
    imported (the database driver and dialect, ...) are imported here, so the workers share their
    pages instead of each importing its own (issue 24's PSS per worker); never the release's own
    modules: one may bind the database, whose connection a worker must not inherit."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        bind_child(app, path, write)
    os.close(write)
    said, deadline = b"", time.monotonic() + BIND_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            said = f"failed the first request did not end within {BIND_TIMEOUT} s".encode()
            break
        chunk = os.read(read, 65536)
        if not chunk:
            break
        said += chunk
    os.close(read)
    os.waitpid(pid, 0)
    line, _, libraries = said.decode("utf-8", "replace").partition("\0")
    record_bind(line := line or "failed the first request's process ended without an answer")
    if not line.startswith("ok "):
        print(f"bingo_health: first bind GET {path}: {line}", file=sys.stderr, flush=True)
    for name in libraries.split() if line.startswith("ok ") else ():
        with contextlib.suppress(Exception):  # what cannot be imported here, a worker imports
            importlib.import_module(name)


def warm_up(app, path: str) -> bool:
    """The app's first request in this worker, before a user's: whether it answered. A failure is
    only logged (the health check says it, and a user's request would have failed the same way)."""
    said = first_request(app, path)
    if not answered(said):
        print(f"bingo_health: warm-up GET {path} answered {said}", file=sys.stderr, flush=True)
    return answered(said)


def warm_in_uwsgi(uwsgi, bind, warm) -> None:
    """warm() now in a worker (lazy-apps: each loads the app after the fork), else bind() now in
    the master and warm() after the fork, chained after a post-fork hook the app set."""
    if uwsgi.worker_id() > 0:
        warm()
        return
    bind()
    previous = getattr(uwsgi, "post_fork_hook", None)

    def after_fork():
        if previous is not None:
            previous()
        warm()

    uwsgi.post_fork_hook = after_fork


def exit_in_uwsgi(uwsgi) -> None:
    """What an interpreter's teardown does that the app can tell, at a process's exit (the vassal
    skips the rest, skip-atexit-teardown: the old slot's workers took 0.5 s to stop with 2 workers,
    3.4 s with 8): the app's atexit handlers, its non-daemon threads joined, its output flushed.
    uWSGI calls uwsgi.atexit at every exit but a busy worker's."""
    previous = getattr(uwsgi, "atexit", None)

    def at_exit():
        try:
            if previous is not None:
                previous()
            threading._shutdown()
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()

    uwsgi.atexit = at_exit
