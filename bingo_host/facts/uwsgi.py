"""uWSGI facts: the pyuwsgi version in bingo-host's uWSGI virtualenv, the app's running workers
(and the release each runs), the processes of one vassal, which release slot nginx's upstream
points at, a slot master's stats, an answer through a slot's own socket, and the user the
installed vassal file makes the app's master run its workers as (a master drops privileges
once, so the uwsgi step must know who the running one dropped to before it rewrites the file)."""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import struct

from ..regular_file import NotRegularFile, read_regular


def installed_pyuwsgi(venv: str) -> str | None:
    """The pyuwsgi version installed in venv, from its dist-info directory name."""
    for path in glob.glob(f"{venv}/lib/python3*/site-packages/pyuwsgi-*.dist-info"):
        m = re.match(r"pyuwsgi-(.+)\.dist-info$", os.path.basename(path))
        if m:
            return m.group(1)
    return None


def vassal_user(path: str) -> str | None:
    """The `uid =` of the vassal file at path; None when there is none, or no regular file
    (never read through a link: the vassals directory is root's, but a reader stays a reader)."""
    try:
        found = read_regular(path)
    except NotRegularFile:
        return None
    m = found and re.search(rb"^uid = (\S+)$", found[0], re.M)
    return m.group(1).decode() if m else None


def _app_processes(uid: int | None) -> list:
    """The uWSGI processes of user `uid` (None: of any user but root), as psutil processes with
    pid, ppid and cmdline: those whose program (pyuwsgi's `<venv>/bin/python <venv>/bin/uwsgi`)
    names uwsgi, not any argument (a path holding the word)."""
    import psutil  # here: `bingo-host hook` imports this, only ApplicationStart asks (measured: ~11 ms)

    return [p for p in psutil.process_iter(["pid", "ppid", "uids", "cmdline"])
            if p.info["uids"] is not None and (p.info["uids"].real == uid if uid is not None
                                               else p.info["uids"].real != 0)
            and any("uwsgi" in arg for arg in (p.info["cmdline"] or ())[:2])]


def workers(releases: str, uid: int) -> list[tuple[int, str]]:
    """(pid, cwd) of the app's uWSGI workers: processes of the app user in a directory under
    `releases` whose parent is one of the app user's uWSGI processes (a master, whose parent
    is the root emperor, enters the release too, and is not counted)."""
    import psutil  # here, as above

    prefix = os.path.realpath(releases) + "/"
    procs = _app_processes(uid)
    pids = {p.info["pid"] for p in procs}
    out = []
    for p in procs:
        if p.info["ppid"] not in pids:
            continue
        try:
            cwd = p.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd.startswith(prefix):
            out.append((p.info["pid"], cwd))
    return out


def vassal_pids(vassal: str) -> set[int]:
    """The master and workers of the vassal file `vassal`, whichever user they dropped to: the
    emperor starts each vassal with its file's name as an argument (`--ini <name>`), and workers
    are forks of their master."""
    name = os.path.basename(vassal)
    return {p.info["pid"] for p in _app_processes(None)
            if any(os.path.basename(arg) == name for arg in p.info["cmdline"] or ())}


def serving_slot(link: str) -> str | None:
    """The release slot nginx's upstream (the symlink at `link`, layout.app_socket) points at:
    'blue' for `<app>-blue.sock`; None when it is no such link (none, or the socket of the
    vassal from before slots)."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    stem = os.path.basename(os.path.splitext(link)[0])
    m = re.fullmatch(re.escape(stem) + r"-(\w+)\.sock", os.path.basename(target))
    return m.group(1) if m else None


def stats(path: str, timeout: float = 2.0) -> dict | None:
    """A uWSGI master's stats (its `stats` socket's JSON: pid, listen_queue, workers with pid,
    accepting and status); None while nothing answers there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None


def uwsgi_packet(env: dict[str, str]) -> bytes:
    """A uwsgi-protocol request (modifier 0: WSGI): a 4-byte header (modifier1, the size of the
    vars as uint16 little-endian, modifier2), then each var as a uint16-sized key and value."""
    body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in ((k.encode(), v.encode()) for k, v in env.items()))
    return struct.pack("<BHB", 0, len(body), 0) + body


def ask(sock: str, path: str, host: str = "localhost", timeout: float = 10.0) -> int | None:
    """GET `path` straight from a uWSGI socket, as nginx's uwsgi_pass would: the HTTP status the
    app answered, None when nothing answered (refused, reset, timed out, no status line)."""
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REQUEST_URI": path, "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": host, "SERVER_PORT": "80",
           "HTTP_HOST": host, "REMOTE_ADDR": "127.0.0.1", "UWSGI_SCHEME": "http"}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(uwsgi_packet(env))
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return None
    m = re.match(rb"HTTP/\d\.\d (\d{3}) ", head)
    return int(m.group(1)) if m else None
