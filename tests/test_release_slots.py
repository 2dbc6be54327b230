"""The release slots' parts that need no uWSGI (deploy/slots.py, facts/uwsgi.py): nginx's upstream
link and which slot it names, a request in the uwsgi protocol answered by a real unix socket
(what a slot's health is asked through before nginx points at it), a master's stats, and when a
slot counts as ready or drained. uWSGI itself runs in tests/test_deploy.py."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading

import pytest

from bingo_host import layout
from bingo_host.deploy import slots
from bingo_host.facts import uwsgi

APP = "music-bingo"


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "UWSGI_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def serve_once(path: str, answer: bytes, got: list) -> threading.Thread:
    """A unix socket at path that reads one request (what arrives before the client stops
    sending, or 4 KiB), keeps it in `got`, answers `answer` and closes."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        with conn, srv:
            conn.settimeout(5)
            head = conn.recv(4)
            size = struct.unpack("<BHB", head)[1] if len(head) == 4 else 0
            body = b""
            while len(body) < size:
                body += conn.recv(size - len(body))
            got.append((head, body))
            conn.sendall(answer)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def parse_vars(body: bytes) -> dict[str, str]:
    out, i = {}, 0
    while i < len(body):
        (klen,) = struct.unpack_from("<H", body, i)
        key = body[i + 2:i + 2 + klen].decode()
        i += 2 + klen
        (vlen,) = struct.unpack_from("<H", body, i)
        out[key] = body[i + 2:i + 2 + vlen].decode()
        i += 2 + vlen
    return out


def test_ask_speaks_the_uwsgi_protocol_and_reads_the_status(runtime):
    sock, got = str(runtime / "app.sock"), []
    t = serve_once(sock, b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nunavailable\n", got)
    assert uwsgi.ask(sock, "/api/health") == 503
    t.join(5)
    head, body = got[0]
    assert head[0] == 0 and head[3] == 0  # modifier 0: a WSGI request
    env = parse_vars(body)
    assert env["PATH_INFO"] == "/api/health" and env["REQUEST_METHOD"] == "GET"


def test_ask_without_an_answer_is_none(runtime):
    assert uwsgi.ask(str(runtime / "nothing.sock"), "/api/health") is None  # nobody listens
    sock = str(runtime / "mute.sock")
    serve_once(sock, b"", [])  # accepts, reads, closes without a word
    assert uwsgi.ask(sock, "/api/health", timeout=5) is None


def test_stats_reads_a_masters_json(runtime):
    sock = str(runtime / "blue.stats")
    stats = {"pid": 10, "listen_queue": 0, "workers": [{"pid": 11, "accepting": 1, "status": "idle"},
                                                       {"pid": 0, "accepting": 0, "status": "cheap"}]}
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(1)

    def run():  # uWSGI's stats server writes its JSON on connect and closes
        conn, _ = srv.accept()
        with conn, srv:
            conn.sendall(json.dumps(stats).encode())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert uwsgi.stats(sock) == stats
    t.join(5)
    assert slots.ready_workers(stats) == 1
    assert slots.ready_workers(None) == 0
    assert uwsgi.stats(str(runtime / "none.stats")) is None


def test_point_replaces_the_upstream_atomically_and_names_the_slot(runtime):
    link = layout.app_socket(APP)
    assert uwsgi.serving_slot(link) is None  # nothing there yet
    # The vassal from before slots bound its socket at the very path nginx uses.
    legacy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    legacy.bind(link)
    try:
        assert uwsgi.serving_slot(link) is None
        slots.point(APP, "blue")
        assert os.readlink(link) == f"{APP}-blue.sock"  # relative: beside it in the runtime directory
        assert uwsgi.serving_slot(link) == "blue" and slots.serving(APP) == "blue"
        slots.point(APP, "green")
        assert uwsgi.serving_slot(link) == "green"
        assert os.listdir(runtime) == [os.path.basename(link)]  # no temporary link left
    finally:
        legacy.close()
    os.unlink(link)
    os.symlink("elsewhere.sock", link)
    assert uwsgi.serving_slot(link) is None


def test_a_connect_through_the_link_reaches_the_slot(runtime):
    """nginx connects by path: through the link it reaches the socket the link names."""
    got = []
    t = serve_once(layout.slot_socket(APP, "green"), b"HTTP/1.1 200 OK\r\n\r\nok\n", got)
    slots.point(APP, "green")
    assert uwsgi.ask(layout.app_socket(APP), "/api/health") == 200
    t.join(5)


def test_other_slot():
    assert slots.other(None) == "blue" and slots.other("blue") == "green" and slots.other("green") == "blue"
    assert set(layout.SLOTS) == {"blue", "green"}


def test_alive_is_false_for_gone_and_zombie_processes():
    import subprocess
    import time

    p = subprocess.Popen(["true"])
    for _ in range(100):  # exited, not reaped: a zombie
        if not slots.alive(p.pid):
            break
        time.sleep(0.02)
    assert not slots.alive(p.pid)
    p.wait()
    assert not slots.alive(p.pid)
    assert slots.alive(os.getpid())


class FakeMaster:
    """A slot's stats socket answering the current `stats` to every connect (as uWSGI's stats
    server does), and optionally its app socket answering every request with `status`."""

    def __init__(self, runtime, slot: str, stats: dict, status: int | None = 200):
        self.stats, self.socks = stats, []
        os.makedirs(layout.app_fifo_dir(APP), exist_ok=True)
        self._listen(layout.slot_stats(APP, slot), lambda conn: conn.sendall(json.dumps(self.stats).encode()))
        if status is not None:
            def answer(conn):
                conn.recv(65536)
                conn.sendall(f"HTTP/1.1 {status} X\r\n\r\n".encode())
            self._listen(layout.slot_socket(APP, slot), answer)

    def _listen(self, path: str, handle) -> None:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(8)
        self.socks.append(srv)

        def run():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    handle(conn)

        threading.Thread(target=run, daemon=True).start()

    def close(self):
        for s in self.socks:
            s.close()


def fake_ctx(processes: int = 2):
    from types import SimpleNamespace

    return SimpleNamespace(cfg=SimpleNamespace(app=SimpleNamespace(name=APP, processes=processes,
                                                                   health_path="/api/health")))


def workers_of(*states):
    return [{"pid": 100 + i, "accepting": int(state != "starting"), "status": "idle" if state == "starting" else state}
            for i, state in enumerate(states)]


def test_a_slot_is_ready_once_every_worker_accepts_and_the_app_answers(runtime, monkeypatch):
    monkeypatch.setattr(slots, "journal_tail", lambda lines=15: "(journal)")
    master = FakeMaster(runtime, "green", {"listen_queue": 0, "workers": workers_of("idle", "starting")})
    try:
        with pytest.raises(slots.DeployError, match=r"slot green did not start within 0 s \(1 of 2 workers"):
            slots.wait_ready(fake_ctx(), "green", 0.3)
        master.stats["workers"] = workers_of("idle", "idle")
        assert slots.wait_ready(fake_ctx(), "green", 5) < 5
        with pytest.raises(slots.DeployError, match=r"\(2 of 3 workers"):
            slots.wait_ready(fake_ctx(processes=3), "green", 0.3)
    finally:
        master.close()


def test_a_failed_first_bind_fails_the_wait_at_once_with_the_apps_reason(runtime, monkeypatch):
    """The slot's master recorded that the app's first request failed: no waiting for workers
    that would serve a broken release, nor for the load timeout."""
    import time

    ctx = fake_ctx()
    ctx.cfg.app.root = str(runtime / "app")
    os.makedirs(layout.app_fifo_dir(APP), exist_ok=True)
    with open(layout.slot_bind_record(APP, "green"), "w") as f:
        f.write("failed RuntimeError: no database\n")
    started = time.monotonic()
    with pytest.raises(slots.DeployError, match=r"first request failed in \S+, so it is not switched to: "
                                                 r"RuntimeError: no database$"):
        slots.wait_ready(ctx, "green", 30)
    assert time.monotonic() - started < 5


def test_a_slot_whose_app_does_not_answer_is_not_ready(runtime, monkeypatch):
    monkeypatch.setattr(slots, "journal_tail", lambda lines=15: "(journal)")
    master = FakeMaster(runtime, "blue", {"listen_queue": 0, "workers": workers_of("idle", "idle")}, status=None)
    try:
        with pytest.raises(slots.DeployError, match="slot blue did not start"):
            slots.wait_ready(fake_ctx(), "blue", 0.3)
    finally:
        master.close()


def test_drain_waits_for_busy_workers_and_the_listen_queue(runtime):
    import time

    master = FakeMaster(runtime, "blue", {"listen_queue": 3, "workers": workers_of("busy", "idle")}, status=None)
    try:
        done = threading.Event()
        t = threading.Thread(target=lambda: (slots.drain(APP, "blue"), done.set()), daemon=True)
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # requests queued and a worker busy: the slot still holds requests
        master.stats["listen_queue"] = 0
        time.sleep(0.3)
        assert not done.is_set()  # a worker still busy
        master.stats["workers"] = workers_of("idle", "idle")
        assert done.wait(2)
    finally:
        master.close()
    slots.drain(APP, "green")  # nothing answers there: nothing to drain, no wait


def test_a_slot_that_does_not_stop_gracefully_is_killed(runtime, monkeypatch, tmp_path):
    """A graceful stop that reaches workers still in their warm-up can hang for good; the slot
    holds no request by then, so after STOP_TIMEOUT its processes are killed and the stop goes on."""
    import subprocess
    import sys

    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):\n"
                                 "    signal.signal(s, signal.SIG_IGN)\n"
                                 "print('ready', flush=True)\ntime.sleep(60)\n"], stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout.readline() == b"ready\n"
        vassal = tmp_path / "music-bingo-old.ini"
        vassal.write_text("[uwsgi]\n")
        monkeypatch.setattr(slots.uwsgi, "vassal_pids", lambda path: {stubborn.pid})
        monkeypatch.setattr(slots.files, "write_fifo", lambda path, data: True)  # asked; it ignores it
        monkeypatch.setattr(slots, "STOP_TIMEOUT", 0.5)
        slots.stop(fake_ctx(), str(vassal))
        assert stubborn.wait(5) == -9 and not vassal.exists()
    finally:
        stubborn.kill()
        stubborn.wait()
