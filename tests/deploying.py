"""What the deploy tests share: bundles of the fixture app, requests through nginx, records, and
an sdist whose build backend records who builds it.

The fixture app (tests/fixtures/sample_app) behaves like the real music bingo server: it reads
<release>/musicbingo/bingo.ini, binds MariaDB through mysqlclient (from mysql-requirements.txt)
on each worker's first request, answers /api/user 401 without a token and everything unknown,
/api/health included, with its index page. Health comes from bingo-host's wrapper.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"
ROOT = "/var/www/music-bingo"
ENV = {"BINGO_HOST_VALIDATE_TIMEOUT": "8"}
MAX_LOAD_SECONDS = 900  # a Load stops by itself, whatever happens


def http(path: str, method: str = "GET", data: dict | None = None, token: str | None = None,
         timeout: float = 10) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(f"http://127.0.0.1{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def summarize(results: Sequence[tuple[bool, float]]) -> tuple[int, int, float, float]:
    """Requests sent, failed, p50 and p99 latency in ms (of the answered ones), from (ok, ms)."""
    lat = sorted(ms for ok, ms in results if ok)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    return len(results), sum(1 for ok, _ in results if not ok), p(0.50), p(0.99)


class Load:
    """`rate` requests a second, cycling through `requests` (path, headers), from a thread pool
    so a slow answer never slows the schedule; non-2xx or no answer within `timeout` fails."""

    def __init__(self, rate: float = 20,
                 requests: Sequence[tuple[str, dict]] = (("/", {}), ("/api/health", {})),
                 timeout: float = 5, tail: float = 2, workers: int = 64):
        self.rate, self.requests, self.timeout, self.tail = rate, list(requests), timeout, tail
        self.workers = workers
        self.results: list[tuple[bool, float]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, path: str, headers: dict) -> None:
        start = time.monotonic()
        ok = False
        try:
            req = urllib.request.Request(f"http://127.0.0.1{path}", headers=headers)
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
                ok = 200 <= resp.status < 300
        except (urllib.error.URLError, OSError):
            ok = False
        with self._lock:
            self.results.append((ok, (time.monotonic() - start) * 1000))

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            t0 = time.monotonic()
            i = 0
            while not self._stop.is_set() and time.monotonic() - t0 < MAX_LOAD_SECONDS:
                pool.submit(self._one, *self.requests[i % len(self.requests)])
                i += 1
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(self.tail)
        self._stop.set()
        self._thread.join()

    def summary(self) -> tuple[int, int, float, float]:
        return summarize(self.results)


def serving(host) -> str:
    return host.run(["readlink", f"{ROOT}/current"]).stdout.strip().rsplit("/", 1)[-1]


def serving_vassal(host) -> str:
    """The vassal file of the release slot nginx's upstream points at."""
    target = host.run(["readlink", "/run/bingo-uwsgi/music-bingo.sock"]).stdout.strip()
    return f"/etc/bingo-host/vassals/{target.removesuffix('.sock')}.ini"


def worker_releases(host) -> set[str]:
    """The releases the app's uWSGI workers run in (their cwd; the master, whose parent is the
    root emperor, stays where it started)."""
    out = host.run_shell("for p in $(pgrep -f uwsgi); do pp=$(ps -o ppid= -p $p | tr -d ' '); "
                         "[ -n \"$pp\" ] && [ \"$(stat -c %U /proc/$pp)\" != root ] && "
                         f"case $(readlink /proc/$p/cwd) in {ROOT}/releases/*) readlink /proc/$p/cwd;; esac; "
                         "done", check=False).stdout
    return {line.rsplit("/", 1)[-1] for line in out.split()}


def health_release(host) -> str:
    """The release the health check answers from (its workers'); fails unless it is healthy.
    The public answer is only `ok`: which release serves is read on the host."""
    status, body = http("/api/health")
    assert (status, body) == (200, "ok\n"), body
    releases = worker_releases(host)
    assert len(releases) == 1, releases
    return releases.pop()


def health_reason(host) -> str:
    """Why the health check last said `unavailable`: its line in the app's journal (the
    public answer never says why)."""
    def said() -> list[str]:
        journal = host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager", "-o", "cat"]).stdout
        return [line for line in journal.splitlines() if line.startswith("bingo_health: ")]

    before = len(said())
    status, body = http("/api/health")
    assert (status, body) == (503, "unavailable\n"), (status, body)
    deadline = time.monotonic() + 10
    while len(lines := said()) == before:  # the journal takes the line a moment later
        assert time.monotonic() < deadline, "the health check logged no reason"
        time.sleep(0.2)
    return lines[-1]


def use_the_app(username: str) -> None:
    """The app's own API through nginx: 401 without a token, a user written to and read back
    from MariaDB with the app's credentials."""
    status, body = http("/api/user")
    assert status == 401, body
    status, body = http("/api/user", "PUT", {"username": username, "password": "pw-" + username,
                                             "email": f"{username}@example.com"})
    assert status == 200, body
    token = json.loads(body)["access_token"]
    status, body = http("/api/user", token=token)
    assert status == 200, body
    assert json.loads(body)["username"] == username


def record(host, release: str) -> dict:
    return json.loads(host.read_file(f"{ROOT}/releases/{release}/bingo-release.json"))


def deploy_state(host) -> dict:
    return json.loads(host.read_file("/var/lib/bingo-host/deploy.json"))


class Bundles:
    """Variants of the fixture app, bundled on this machine with `bingo-host bundle` and copied in."""

    def __init__(self, host, wheel: Path, tmp: Path):
        self.host, self.wheel, self.tmp = host, wheel, tmp

    def make(self, name: str, fmt: str = "zip", extra_requirement: str | None = None,
             mysql_requirements: str | None = None, wheel: Path | None = None,
             files: dict[str, bytes] | None = None, import_error: str | None = None) -> str:
        """A bundle; extra_requirement is appended to requirements.txt (a new virtualenv),
        mysql_requirements replaces that file ('' removes it: no database driver); files are
        added to the app (path relative to it: content); import_error makes application.py raise
        it when imported."""
        app = self.tmp / f"app-{name}"
        shutil.copytree(SAMPLE, app)
        (app / "musicbingo" / "bundle-name.txt").write_text(name + "\n")  # every bundle differs
        for rel, content in (files or {}).items():
            (app / rel).parent.mkdir(parents=True, exist_ok=True)
            (app / rel).write_bytes(content)
        if import_error:
            code = app / "application.py"
            code.write_text(code.read_text() + f"raise RuntimeError({import_error!r})\n")
        if extra_requirement:
            reqs = app / "requirements.txt"
            reqs.write_text(reqs.read_text() + extra_requirement + "\n")
        if mysql_requirements == "":
            (app / "mysql-requirements.txt").unlink()
        elif mysql_requirements is not None:
            (app / "mysql-requirements.txt").write_text(mysql_requirements)
        out = self.tmp / f"{name}.{'zip' if fmt == 'zip' else 'tar.gz'}"
        subprocess.run([str(REPO / ".venv/bin/python"), "-m", "bingo_host", "bundle", "--app", str(app),
                        "--out", str(out), "--format", fmt, "--wheel", str(wheel or self.wheel)],
                       check=True, cwd=REPO, capture_output=True)
        inside = f"/root/bundles/{out.name}"
        self.host.put_file(inside, out.read_bytes())
        return inside


RECORDER_BACKEND = """\
# The build backend recorder-1.0 carries in its tree (PEP 517 backend-path): the revision's own
# build code, which the build account runs; it needs nothing from an index.
import base64, hashlib, os, zipfile

open(MARKER, "a").write(f"{os.getuid()} {os.geteuid()} {os.getgroups()} "
                        f"{'AWS_SECRET_ACCESS_KEY' in os.environ}\\n")
FILES = {"recorder.py": "RECORDED = True\\n",
         "recorder-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: recorder\\nVersion: 1.0\\n",
         "recorder-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: recorder\\n"
                                         "Root-Is-Purelib: true\\nTag: py3-none-any\\n"}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    import time
    deadline = time.monotonic() + 300
    while HOLD and os.path.exists(HOLD) and time.monotonic() < deadline:
        time.sleep(0.2)  # a build that takes as long as the test needs
    name = "recorder-1.0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        for path, text in FILES.items():
            whl.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(text)}")
        whl.writestr("recorder-1.0.dist-info/RECORD", "\\n".join(record + ["recorder-1.0.dist-info/RECORD,,"]) + "\\n")
    return name
"""


def recorder_sdist(out: Path, marker: str, hold: str | None = None) -> None:
    """recorder-1.0.tar.gz: a project (one module, recorder) whose own build backend writes to
    marker the uids and groups it runs as, and whether it sees AWS_SECRET_ACCESS_KEY; building
    it needs no index. With `hold`, its wheel build waits while that file exists (at most 300 s)."""
    src = out.parent / "recorder-1.0"
    src.mkdir()
    (src / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "recorder_backend"\n'
                                        'backend-path = ["."]\n')
    (src / "recorder_backend.py").write_text(f"MARKER = {marker!r}\nHOLD = {hold!r}\n" + RECORDER_BACKEND)
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: recorder\nVersion: 1.0\n")
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src, arcname="recorder-1.0")
    shutil.rmtree(src)
