"""Zero-downtime releases of the fixture app (it behaves like the real music bingo server) on
the shared bootstrapped systemd test host, through `bingo-host deploy`, the emulator of the
CodeDeploy agent (test_codedeploy_agent.py runs the real agent on the same host, first).

The tests run in file order and build on each other (one host, one release history):
first emulated deploy -> no well-known admin login -> static build and /api caching -> a burst of API requests -> venv reuse
(under load: no stall) -> failed build never switched to -> the upstream pins without the override
fail -> missing database driver never switched to ->
a release that cannot be imported never serves (under load: the old workers serve throughout) ->
MariaDB stopped -> killed mid-AfterInstall then redeployed -> CRLF hook refused -> rollback by hand.
"""

from __future__ import annotations

import gzip
import http.client as http_client
import io
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BIN
from tests.deploying import (ENV, ROOT, SAMPLE, Bundles, Load, deploy_state, health_reason,
                             health_release, http, record, serving, serving_vassal, use_the_app)


@pytest.fixture(scope="module")
def host(host_pool):
    bootstrapped = host_pool.bootstrapped()  # the session's shared host
    assert bootstrapped.first.returncode == 0, bootstrapped.first.stdout + bootstrapped.first.stderr
    return bootstrapped.host


@pytest.fixture(scope="module")
def bundles(host, wheel, tmp_path_factory):
    return Bundles(host, wheel, tmp_path_factory.mktemp("bundles"))


def deploy(host, bundle: str, deployment_id: str, timeout: float = 1200, env: dict | None = None):
    return host.run([BIN, "deploy", bundle, "--deployment-id", deployment_id], env={**ENV, **(env or {})},
                    check=False, timeout=timeout)


def test_first_emulated_deploy(host, bundles):
    ini_before = host.read_file(f"{ROOT}/shared/bingo.ini")
    r = deploy(host, bundles.make("first", extra_requirement="idna==3.6"), "d-FIRST0001")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # Every event ran, in the agent's order, with its output prefixed.
    positions = [out.index(f"[{event}]") for event in
                 ("BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService")]
    assert positions == sorted(positions)
    # Every production requirements file, in order, in one uv run, with the config's override
    # of the upstream pin that no longer builds; bytecode compiled at build.
    assert ("virtualenv: uv pip install -r requirements.txt -r mysql-requirements.txt --override "
            "(mysql==0.0.3)") in out
    venv_python = f"{ROOT}/releases/d-FIRST0001/venv/bin/python"
    versions = host.run([venv_python, "-c", "from importlib.metadata import version as v; "
                         "print(v('mysql'), v('mysqlclient'), v('PyMySQL'))"]).stdout.split()
    assert versions == ["0.0.3", "1.4.6", "1.1.1"], versions
    assert host.run_shell(f"ls {ROOT}/releases/d-FIRST0001/__pycache__/application.cpython-*.pyc "
                          f"{ROOT}/releases/d-FIRST0001/venv/lib/python3*/site-packages/flask/"
                          "__pycache__/app.cpython-*.pyc", check=False).returncode == 0
    assert f"switch: {ROOT}/current -> d-FIRST0001" in out
    assert serving(host) == "d-FIRST0001" and health_release(host) == "d-FIRST0001"
    status, body = http("/")
    assert status == 200 and "music bingo sample client" in body
    use_the_app("emulated")
    rec = record(host, "d-FIRST0001")
    assert rec["deployment_id"] == "d-FIRST0001" and rec["validated_at"] and not rec["failed"]
    assert rec["bundle"]["type"] == "file" and len(rec["bundle"]["sha256"]) == 64
    assert deploy_state(host)["status"] == "succeeded"
    # The release is root's and read-only to the app; both places the app reads bingo.ini from
    # link to shared/, and serving never rewrote it (its secret_key is there).
    ti = host.testinfra
    rel = f"{ROOT}/releases/d-FIRST0001"
    assert ti.file(f"{rel}/application.py").user == "root"
    assert ti.file(f"{rel}/application.py").mode == 0o644
    for link in ("bingo.ini", "musicbingo/bingo.ini"):
        assert ti.file(f"{rel}/{link}").linked_to == f"{ROOT}/shared/bingo.ini"
    assert host.read_file(f"{ROOT}/shared/bingo.ini") == ini_before
    assert host.run(["find", f"{ROOT}/staging", "-mindepth", "1"]).stdout == ""
    # A bootstrap on a deployed host changes nothing, the secret key included.
    again = host.run([BIN, "bootstrap"], check=False)
    assert "already converged, nothing changed" in again.stdout, again.stdout + again.stderr
    assert host.read_file(f"{ROOT}/shared/bingo.ini") == ini_before



# The fixture's own default, as the real app's: a first bind with create_superuser (true unless
# bingo.ini says otherwise) makes admin/changeme and prints it. Against a scratch sqlite file.
APP_DEFAULT = """
import sys
sys.path.insert(0, "/var/www/music-bingo/current")
from musicbingo.options import DatabaseOptions, Options
from musicbingo.models.db import DatabaseConnection
assert Options().create_superuser is True
DatabaseConnection.bind(DatabaseOptions(database_provider="sqlite", database_name=sys.argv[1]),
                        create_superuser=True)
"""


def test_a_fresh_site_has_no_well_known_admin_login(host):
    """The app's own first account (admin/changeme, that password printed to its log) is off in
    the bingo.ini bingo-host writes; `bingo-host create-admin` makes the admin instead: its
    password shown once and kept 0600 root, in no log."""
    scratch = "/tmp/app-default-admin.db3"
    made = host.run(["runuser", "-u", "music-bingo", "--", f"{ROOT}/current/venv/bin/python", "-c",
                     APP_DEFAULT, scratch], check=False)
    host.run(["rm", "-f", scratch])
    assert made.returncode == 0, made.stderr
    assert 'Created admin account "admin" (admin@music.bingo) with password "changeme"' in made.stdout
    # on this host: the first deploy's requests bound the app to an empty database, and no admin
    assert "\ncreate_superuser = false\n" in host.read_file(f"{ROOT}/shared/bingo.ini")
    assert http("/api/user", "POST", {"username": "admin", "password": "changeme"})[0] == 401
    assert "Created admin account" not in host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager",
                                                    "-o", "cat"]).stdout
    kept = "/etc/bingo-host/app-admin-password"
    try:
        r = host.run([BIN, "create-admin"], check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        password = re.search(r"^app account 'admin': password (\S+)$", r.stdout, re.M).group(1)
        assert host.read_file(kept) == password + "\n"
        f = host.testinfra.file(kept)
        assert (f.user, f.mode) == ("root", 0o600)
        status, body = http("/api/user", "POST", {"username": "admin", "password": password})
        assert status == 200 and json.loads(body)["groups_mask"] & 0x40000000, body  # the ADMIN group
        again = host.run([BIN, "create-admin"], check=False)
        assert again.returncode == 1 and "the app account 'admin' exists (--reset" in again.stderr
        r = host.run([BIN, "create-admin", "--reset"], check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        renewed = re.search(r"^app account 'admin': password (\S+)$", r.stdout, re.M).group(1)
        assert http("/api/user", "POST", {"username": "admin", "password": renewed})[0] == 200
        assert http("/api/user", "POST", {"username": "admin", "password": password})[0] == 401
        journal = host.run(["journalctl", "--no-pager", "-o", "cat"]).stdout
        assert password not in journal and renewed not in journal
        assert "create-admin: made the app account 'admin'" in journal
        assert "create-admin: reset the password of the app account 'admin'" in journal
    finally:
        host.run(["mariadb", "-e", "DELETE FROM bingo.User WHERE username = 'admin'"], check=False)
        host.run(["rm", "-f", kept])

def get(path: str, accept_gzip: bool = True):
    """(status, headers as a list of (name, value), body as sent) through nginx."""
    conn = http_client.HTTPConnection("127.0.0.1", 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if accept_gzip else {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def header(headers, name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


def test_static_build_is_cached_and_compressed_and_the_api_never_cached(host):
    """The client build as create-react-app makes it: hashed assets cached for a year, the
    index revalidated on every load (a new release is seen at once), text gzipped for clients
    that ask; /api/* still never cached."""
    js = "/static/js/main.4f1c2a9e.js"
    status, headers, body = get(js)
    assert status == 200
    assert header(headers, "Cache-Control") == ["public, max-age=31536000, immutable"]
    assert header(headers, "Content-Encoding") == ["gzip"] and header(headers, "Vary") == ["Accept-Encoding"]
    plain = host.read_file(f"{ROOT}/current/build{js}")
    assert gzip.decompress(body).decode() == plain and len(body) < len(plain) / 2
    assert header(headers, "X-Content-Type-Options") == ["nosniff"]
    status, headers, _ = get("/static/css/main.8b3d5e71.css")
    assert status == 200 and header(headers, "Content-Encoding") == ["gzip"]
    assert header(headers, "Cache-Control") == ["public, max-age=31536000, immutable"]
    status, headers, body = get(js, accept_gzip=False)  # a client that did not ask gets it plain
    assert header(headers, "Content-Encoding") == [] and body.decode() == plain
    for path in ("/", "/index.html", "/game/42"):  # the client's routes get its index too
        status, headers, body = get(path)
        assert status == 200 and header(headers, "Cache-Control") == ["no-cache"], (path, headers)
        assert header(headers, "Content-Encoding") == ["gzip"]
        assert b"music bingo sample client" in gzip.decompress(body)
    status, headers, _ = get("/api/user")
    assert status == 401 and header(headers, "Cache-Control") == ["no-store"], headers
    status, headers, _ = get("/api/health")
    assert status == 200 and header(headers, "Cache-Control") == ["no-store"], headers


def test_a_burst_of_api_requests_waits_instead_of_failing(host):
    """Every player's client asks at once when a game starts: 300 simultaneous API requests
    (h2load, each on its own connection) all answer 200. With uWSGI's default listen queue of
    100 the connections past it were refused and nginx answered 502 (a third of a burst of 150)."""
    status, body = http("/api/user", "POST", {"username": "emulated", "password": "pw-emulated"})
    assert status == 200, body
    token = json.loads(body)["access_token"]
    assert "listen = 1024" in host.read_file(serving_vassal(host))
    r = subprocess.run(["h2load", "--h1", "-n", "300", "-c", "300", "-H", f"Authorization: Bearer {token}",
                        "http://127.0.0.1/api/user"], capture_output=True, text=True, timeout=120)
    assert "status codes: 300 2xx, 0 3xx, 0 4xx, 0 5xx" in r.stdout, r.stdout + r.stderr


def test_same_requirements_reuse_the_virtualenv(host, bundles):
    bundle = bundles.make("second", fmt="tgz", extra_requirement="idna==3.6")
    with Load(rate=20) as load:
        r = deploy(host, bundle, "d-SECOND002")
    assert r.returncode == 0, r.stdout + r.stderr
    # The release starts on the other slot (one import, every worker forked), nginx's upstream
    # flips to it once every worker accepts, the old slot drains and stops: no request fails or
    # waits for an import, and no process of the old slot is left when the switch ends.
    # AfterInstall started it there, so that its import overlaps the way to ApplicationStart.
    before = re.search(r"switch: /run/bingo-uwsgi/music-bingo.sock -> slot (\w+)", r.stdout)
    assert before and re.search(r"uwsgi: slot \w+ ready in [\d.]+ s \(\d+ workers\); 1 old vassal\(s\) "
                                r"drained and stopped", r.stdout), r.stdout
    assert f"uwsgi: slot {before.group(1)} loading d-SECOND002 beside slot" in r.stdout, r.stdout
    assert f"uwsgi: slot {before.group(1)} was started for d-SECOND002 already" in r.stdout, r.stdout
    assert host.run(["ls", "/etc/bingo-host/vassals"]).stdout.split() == [f"music-bingo-{before.group(1)}.ini"]
    assert "hook ApplicationStart: done in" in r.stdout
    sent, failed, p50, p99 = load.summary()
    assert failed == 0 and p99 < 1000, (sent, failed, p50, p99)
    assert "virtualenv: reusing" in r.stdout and "pip install" not in r.stdout
    first = host.run(["stat", "-L", "-c", "%i", f"{ROOT}/releases/d-FIRST0001/venv"]).stdout
    second = host.run(["stat", "-L", "-c", "%i", f"{ROOT}/releases/d-SECOND002/venv"]).stdout
    assert first == second
    assert record(host, "d-SECOND002")["venv_reused"] is True
    assert health_release(host) == "d-SECOND002"


def test_the_serving_slot_comes_back_when_the_emperor_restarts(host):
    """A reboot, or the emperor restarted, empties /run/bingo-uwsgi, nginx's upstream link with
    it: the one slot's vassal claims it again as it starts."""
    link = host.run(["readlink", "/run/bingo-uwsgi/music-bingo.sock"]).stdout.strip()
    with ThreadPoolExecutor(8) as pool:  # every worker serves the app: it starts its scheduler thread
        assert set(pool.map(lambda _: http("/api/user")[0], range(32))) == {401}
    threads = host.run_shell("for p in $(pgrep -f 'uwsgi --ini'); do ls /proc/$p/task | wc -l; done").stdout
    assert max(map(int, threads.split())) >= 2, threads  # what made a stop wait out the mercy
    start = time.monotonic()
    host.run(["systemctl", "stop", "bingo-uwsgi"])
    stopped = time.monotonic() - start
    # Before KillMode=mixed every such worker sat out the vassal's 10 s mercy (a stop took 14 s).
    assert stopped < 6, host.run(["journalctl", "-u", "bingo-uwsgi", "-n", "30", "--no-pager", "-o", "cat"]).stdout
    host.run(["systemctl", "start", "bingo-uwsgi"])
    deadline = time.monotonic() + 60
    while http("/api/health")[0] != 200:
        assert time.monotonic() < deadline, host.run(["journalctl", "-u", "bingo-uwsgi", "-n", "40",
                                                      "--no-pager", "-o", "cat"]).stdout
        time.sleep(0.5)
    assert host.run(["readlink", "/run/bingo-uwsgi/music-bingo.sock"]).stdout.strip() == link
    assert health_release(host) == "d-SECOND002"


def test_failed_pip_install_is_never_switched_to(host, bundles):
    bundle = bundles.make("badpin", mysql_requirements="mysqlclient==0.0.0.bingo.no.such.version\n")
    r = deploy(host, bundle, "d-BADPIN003")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "AfterInstall" in r.stderr and "failed" in r.stderr
    assert "[ApplicationStart]" not in r.stdout
    assert serving(host) == "d-SECOND002" and health_release(host) == "d-SECOND002"
    assert host.run(["test", "-e", f"{ROOT}/releases/d-BADPIN003"], check=False).returncode != 0
    state = deploy_state(host)
    assert state["deployment_id"] == "d-BADPIN003" and state["status"] == "failed"
    assert state["event"] == "AfterInstall"


def test_the_upstream_pins_without_the_override_fail_in_after_install(host, bundles):
    """The fixture pins what the real app pins: mysql==0.0.2, whose sdist no longer builds. The
    config's app.requirement_overrides (mysql==0.0.3) is what deploys it; without it AfterInstall
    fails and the old release serves on."""
    from tests.conftest import CONFIG, host_config

    device = host.run(["findmnt", "-n", "-o", "SOURCE", "/var/lib/mysql"]).stdout.strip()
    host.put_file(CONFIG, host_config(device, app={"requirement_overrides": []}), mode=0o600)
    try:
        r = deploy(host, bundles.make("nooverride"), "d-NOOVERR03")
    finally:
        host.put_file(CONFIG, host_config(device), mode=0o600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "AfterInstall" in r.stderr and "failed" in r.stderr and "[ApplicationStart]" not in r.stdout
    assert "mysql==0.0.2" in r.stdout + r.stderr, r.stdout + r.stderr
    assert serving(host) == "d-SECOND002" and health_release(host) == "d-SECOND002"
    assert deploy_state(host)["event"] == "AfterInstall"
    assert host.run(["test", "-e", f"{ROOT}/releases/d-NOOVERR03"], check=False).returncode != 0


def test_release_without_its_database_driver_is_never_switched_to(host, bundles):
    """The real app's failure: only requirements.txt installed, no MySQLdb. It imports and
    serves its index, so only a request through the app catches it: the new slot master's first
    bind (deploy/first_bind.py), before nginx is pointed there."""
    r = deploy(host, bundles.make("nodriver", mysql_requirements=""), "d-NODRIVER4")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the app's first request failed in d-NODRIVER4, so it is not switched to: " \
           "ModuleNotFoundError: No module named 'MySQLdb'" in r.stderr, r.stderr
    assert "[ValidateService]" not in r.stdout and "music-bingo.sock -> slot" not in r.stdout
    assert serving(host) == "d-SECOND002" and health_release(host) == "d-SECOND002"
    assert record(host, "d-NODRIVER4")["failed"]["event"] == "ApplicationStart"


def test_release_that_cannot_be_imported_never_serves(host, bundles):
    """A slot whose master cannot import the app never gets a request: it says why in its bind
    record, so the switch fails at once (not after the load timeout) with the app's reason; the
    slot is stopped, the old slot serves throughout, and `current` goes back."""
    only_in_uwsgi = b'if "uwsgi" in sys.modules:\n    raise RuntimeError("broken on purpose")\n'
    bundle = bundles.make("noimport", files={"application.py": (SAMPLE / "application.py").read_bytes()
                                             + only_in_uwsgi})
    with Load(rate=20) as load:
        r = deploy(host, bundle, "d-NOIMPORT5", env={"BINGO_HOST_LOAD_TIMEOUT": "20"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the app's first request failed in d-NOIMPORT5, so it is not switched to: " \
           "RuntimeError: broken on purpose" in r.stderr, r.stderr
    journal = host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager", "-o", "cat"]).stdout
    assert "RuntimeError: broken on purpose" in journal  # the worker said why before it exited
    assert "switch: d-NOIMPORT5 did not load; switching back to d-SECOND002" in r.stdout
    assert "[ValidateService]" not in r.stdout
    sent, failed, p50, p99 = load.summary()
    assert sent > 40 and failed == 0, (sent, failed, p50, p99)
    assert serving(host) == "d-SECOND002" and health_release(host) == "d-SECOND002"
    assert record(host, "d-NOIMPORT5")["failed"]["event"] == "ApplicationStart"


def test_stopped_mariadb_fails_health_status_and_deploys(host, bundles):
    host.run(["systemctl", "stop", "mariadb"])
    try:
        assert "OperationalError: (2002" in health_reason(host)  # logged; the answer says no more
        r = host.run([BIN, "status"], check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "/api/health" in r.stdout and "HTTP 503" in r.stdout
        r = deploy(host, bundles.make("nodb", extra_requirement="idna==3.6"), "d-NODB00005")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "the app's first request failed in d-NODB00005" in r.stderr and "(2002" in r.stderr
        assert serving(host) == "d-SECOND002"  # never switched to
    finally:
        host.run(["systemctl", "start", "mariadb"])
    assert health_release(host) == "d-SECOND002"
    assert host.run([BIN, "status"], check=False).returncode == 0


def app_workers(host) -> set[str]:
    """PIDs of the serving app's uWSGI workers (their parent, the slot's master, is not root's)."""
    return set(host.run_shell("for p in $(pgrep -f uwsgi); do pp=$(ps -o ppid= -p $p | tr -d ' '); "
                              "[ -n \"$pp\" ] && [ \"$(stat -c %U /proc/$pp)\" != root ] && "
                              f"case $(readlink /proc/$p/cwd) in {ROOT}/releases/*) echo $p;; esac; done",
                              check=False).stdout.split())


def login() -> tuple[int, dict, str]:
    """A request that needs the database (the app looks the user up): 401 while it answers."""
    req = urllib.request.Request("http://127.0.0.1/api/user", method="POST", data=b'{"username": "nobody", '
                                 b'"password": "x"}', headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


def test_a_database_outage_is_503_for_what_needs_it_and_every_worker_serves_again_by_itself(host):
    """Issue 23: while the database is down, what needs it answers 503 with Retry-After (the app
    itself says 500), the live path and what needs no database answer 200; every worker is
    forked anew during the outage (its first bind fails: the app binds once per process), and
    within 15 s of the database coming back every request is served, with no restart."""
    assert login()[0] == 401
    host.run(["systemctl", "stop", "mariadb"])
    try:
        status, headers, body = login()
        assert (status, headers.get("Retry-After")) == (503, "5"), (status, body)
        assert json.loads(body) == {"error": "temporarily unavailable, try again in a few seconds"}
        assert http("/api/health/live") == (200, "alive\n")
        assert http("/api/no-database-here")[0] == 200  # the app's catch-all
        assert http("/api/health")[0] == 503
        before = app_workers(host)
        host.run(["kill", "-9", *before])
        deadline = time.monotonic() + 30
        while len(now := app_workers(host) - before) < len(before):
            assert time.monotonic() < deadline, (before, now)
            time.sleep(0.2)
        time.sleep(1)  # their warm-up: the first bind, failing
        assert [login()[0] for _ in range(6)] == [503] * 6
    finally:
        host.run(["systemctl", "start", "mariadb"])
    back, streak, seen = time.monotonic(), 0, []
    while streak < 20:
        assert time.monotonic() - back < 15, f"not served 15 s after the database came back: {seen[-10:]}"
        status = login()[0]
        seen.append(status)
        streak = streak + 1 if status == 401 else 0
    print(f"served again {time.monotonic() - back:.1f} s after the database came back: {seen}")
    journal = host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager", "-o", "cat"]).stdout
    print([line for line in journal.splitlines() if "leaves after this request" in line])
    use_the_app("after-the-outage")


def build_scope_now(host) -> dict | None:
    """What a running `uv pip install` (not systemd-run or setpriv before they exec it) runs in:
    its cgroups, its unit's properties and the kernel's values for them; None if no such
    process ran through the reads (they are short-lived)."""
    def read(*argv):
        r = host.run(list(argv), check=False)
        if r.returncode != 0:
            raise LookupError(argv)
        return r.stdout

    try:
        pid = read("pgrep", "-o", "-f", "^[^ ]*/uv pip install").split()[0]
        cgroups = {}
        for line in read("cat", f"/proc/{pid}/cgroup").splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                cgroups[controller] = path
        unit = cgroups[""].rsplit("/", 1)[-1]  # the unified hierarchy: systemd's own view
        show = dict(line.split("=", 1) for line in read(
            "systemctl", "show", unit, "-p", "CPUWeight,IOWeight,MemoryHigh,MemoryMax").splitlines())
        if "cpu" in cgroups:  # cgroup v1 (cpu: a link to cpu,cpuacct where mounted together)
            kernel = {"cpu.shares": read("cat", f"/sys/fs/cgroup/cpu{cgroups['cpu']}/cpu.shares"),
                      "memory.limit_in_bytes": read(
                          "cat", f"/sys/fs/cgroup/memory{cgroups['memory']}/memory.limit_in_bytes")}
        else:
            kernel = {name: read("cat", f"/sys/fs/cgroup{cgroups['']}/{name}")
                      for name in ("cpu.weight", "memory.high", "memory.max")}
        read("test", "-d", f"/proc/{pid}")  # still the same process: every value is its scope's
    except LookupError:
        return None
    return {"cgroups": cgroups, "unit": unit, "show": show,
            "kernel": {k: v.strip() for k, v in kernel.items()}}


def check_build_scope(host) -> None:
    """uv runs in a transient scope beside the services with low CPU/IO weight and bounded
    memory, and the kernel applies them (on cgroup v1, as this test host has, systemd
    translates the weights to cpu.shares and MemoryMax to memory.limit_in_bytes)."""
    deadline = time.monotonic() + 60
    while (scope := build_scope_now(host)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scope, "no uv pip install ran"
    show, kernel = scope["show"], scope["kernel"]
    assert scope["unit"].endswith(".scope") and scope["cgroups"][""].startswith("/system.slice/"), scope
    assert show["CPUWeight"] == "20" and show["IOWeight"] == "20", show
    assert int(show["MemoryHigh"]) < int(show["MemoryMax"]) < 2**62, show
    if "cpu.shares" in kernel:  # cgroup v1: 20 of the default 100 is 204 of 1024 shares
        assert kernel == {"cpu.shares": "204", "memory.limit_in_bytes": show["MemoryMax"]}, scope
    else:
        assert kernel == {"cpu.weight": "20", "memory.high": show["MemoryHigh"],
                          "memory.max": show["MemoryMax"]}, scope


def test_deploy_killed_mid_after_install_then_redeployed(host, bundles, tmp_path):
    # A requirement whose build (its own backend) lasts while `hold` exists: uv is half way
    # through the new virtualenv for as long as the test needs (from its cache it takes < 1 s).
    from tests.deploying import recorder_sdist

    hold = "/tmp/bingo-test-hold-build"
    recorder_sdist(tmp_path / "recorder-1.0.tar.gz", "/tmp/bingo-test-killed-build", hold=hold)
    # (idna: requirements of their own; the last test's hostile bundle names the same sdist)
    bundle = bundles.make("killed", extra_requirement="idna==3.5\n./Extra-Files/recorder-1.0.tar.gz",
                          files={"Extra-Files/recorder-1.0.tar.gz": (tmp_path / "recorder-1.0.tar.gz").read_bytes()})
    host.run(["touch", hold])
    proc = host.popen([BIN, "deploy", bundle, "--deployment-id", "d-KILLED005"], env=ENV)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            # uv is running for the new virtualenv: AfterInstall is half way.
            if host.run(["pgrep", "-f", "pip.*install"], check=False).returncode == 0:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("AfterInstall never reached uv pip install")
        check_build_scope(host)
        # SIGKILL the driver, the hook and its uv (hooks run in a process group of their own,
        # as under the agent): the host dying mid-AfterInstall.
        proc.kill()
        host.run(["pkill", "-KILL", "-f", "bingo-host hook AfterInstall"], check=False)
        host.run(["pkill", "-KILL", "-f", "pip.*install"], check=False)
        proc.wait(timeout=30)
    finally:
        host.run(["rm", "-f", hold])
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)
    assert host.run(["pgrep", "-f", "pip.*install"], check=False).returncode != 0
    assert serving(host) == "d-SECOND002" and health_release(host) == "d-SECOND002"
    assert deploy_state(host)["status"] == "in-progress"  # nothing could record the kill

    r = deploy(host, bundle, "d-REDEPLOY6")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "taking over from abandoned deployment d-KILLED005" in r.stdout
    assert "removing incomplete" in r.stdout
    assert health_release(host) == "d-REDEPLOY6"
    left = host.run(["ls", "-A", f"{ROOT}/releases"]).stdout.split()
    assert not [e for e in left if e.endswith(".partial") or e == "d-KILLED005"]


def test_crlf_hook_is_refused_before_anything_changes(host, bundles):
    good = bundles.tmp / "first.zip"
    out = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "hooks/after_install.sh":
                data = data.replace(b"\n", b"\r\n")
            dst.writestr(info, data)
    host.put_file("/root/bundles/crlf.zip", out.getvalue())
    state_before = host.read_file("/var/lib/bingo-host/deploy.json")
    r = deploy(host, "/root/bundles/crlf.zip", "d-CRLF00007")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "CRLF" in r.stderr and "hooks/after_install.sh" in r.stderr
    assert "[BeforeInstall]" not in r.stdout
    assert host.read_file("/var/lib/bingo-host/deploy.json") == state_before
    assert serving(host) == "d-REDEPLOY6"


def test_rollback_by_hand(host):
    r = host.run([BIN, "rollback"], env=ENV, check=False, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # d-NODRIVER4, d-NOIMPORT5 and d-NODB00005 failed, d-KILLED005 never finished: back to
    # d-SECOND002.
    assert "rollback: serving d-SECOND002" in r.stdout
    assert serving(host) == "d-SECOND002" and health_release(host) == "d-SECOND002"
    assert record(host, "d-REDEPLOY6")["failed"]["event"] == "rollback"


def test_a_new_app_user_takes_over_the_serving_app(host):
    """What upgrading an Amazon Linux host does (its app ran as ec2-user, now as the dedicated
    user): bootstrap moves the running app to the new user, and it keeps serving."""
    from tests.conftest import CONFIG, host_config

    device = host.run(["findmnt", "-n", "-o", "SOURCE", "/var/lib/mysql"]).stdout.strip()

    def app_users() -> set[str]:
        """Who the app's uWSGI processes (master and workers) run as."""
        return {user for user in ("music-bingo", "bingo-moved")
                if len(host.run(["pgrep", "-u", user, "-f", "uwsgi"], check=False).stdout.split()) >= 2}

    def bootstrap_as(config: str) -> None:
        host.put_file(CONFIG, config, mode=0o600)
        r = host.run([BIN, "bootstrap"], check=False, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http("/api/health", timeout=5)[0] == 200:
                    return
            except OSError:  # nginx waits for a worker that is not there yet
                pass
            time.sleep(0.5)
        journal = host.run(["journalctl", "-u", "bingo-uwsgi", "-n", "40", "--no-pager", "-o", "cat"],
                           check=False).stdout
        pytest.fail(f"the app does not answer after the bootstrap:\n{r.stdout}\n{journal}")

    assert app_users() == {"music-bingo"}
    try:
        bootstrap_as(host_config(device, app={"user": "bingo-moved"}))
        assert app_users() == {"bingo-moved"}
        assert health_release(host) == "d-SECOND002"
        use_the_app("moved")
    finally:
        bootstrap_as(host_config(device))
        host.run(["userdel", "bingo-moved"], check=False)
    assert app_users() == {"music-bingo"} and health_release(host) == "d-SECOND002"


def test_the_build_account_builds_the_venv_and_root_seals_it(host, wheel, tmp_path, monkeypatch):
    """issue 21: the revision's code that a build runs (a `pip/` package at the release's root,
    which shadowed pip when the release was the working directory; a local sdist's build
    backend) runs as the build account bootstrap made, never root or the app user, and the
    virtualenv it built with uv (hard links from the account's cache) is root's and read-only to
    others before anything uses it."""
    import shutil

    from bingo_host.deploy import bundle as bundle_mod
    from tests.deploying import SAMPLE
    from tests.deploying import recorder_sdist

    passwd = host.run(["getent", "passwd", "bingo-build"]).stdout.strip().split(":")
    assert passwd[5:] == ["/var/lib/bingo-host/build", "/usr/sbin/nologin"], passwd
    build_uid, app_uid = int(passwd[2]), int(host.run(["id", "-u", "music-bingo"]).stdout)
    assert host.run(["id", "-nG", "bingo-build"]).stdout.split() == ["bingo-build"]  # not the app's
    assert host.run(["stat", "-c", "%U:%G %a", "/var/lib/bingo-host/build",
                     "/var/lib/bingo-host/build-work"]).stdout.split() == [
        "bingo-build:bingo-build", "700", "root:root", "755"]
    shadow, uids = "/tmp/bingo-test-shadow-ran", "/tmp/bingo-test-setup-py-uid"
    host.run(["rm", "-f", shadow, uids])
    app = tmp_path / "app"
    shutil.copytree(SAMPLE, app)
    (app / "Extra-Files").mkdir()
    recorder_sdist(app / "Extra-Files" / "recorder-1.0.tar.gz", uids)
    with open(app / "requirements.txt", "a") as f:
        f.write("./Extra-Files/recorder-1.0.tar.gz\n")
    # `bingo-host bundle` takes only the app's own trees; an attacker's bundle has anything.
    for name in ("pip", "ensurepip"):
        (app / name).mkdir()
        (app / name / "__init__.py").write_text(f"import os\nopen({shadow!r}, 'a').write(f'{{os.getuid()}}\\n')\n")
    collect = bundle_mod._collect
    monkeypatch.setattr(bundle_mod, "_collect", lambda src, whl: collect(src, whl) + [
        (name, app / name) for name in ("pip", "pip/__init__.py", "ensurepip", "ensurepip/__init__.py")])
    out = bundle_mod.build_bundle(app, tmp_path / "hostile.zip", wheel)
    host.put_file("/root/bundles/hostile.zip", out.read_bytes())
    r = deploy(host, "/root/bundles/hostile.zip", "d-BUILDER08")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "as bingo-build" in r.stdout and "sealed root's" in r.stdout
    assert host.run(["test", "-e", f"{ROOT}/releases/d-BUILDER08/pip/__init__.py"]).returncode == 0
    assert host.run(["test", "-e", shadow], check=False).returncode != 0, host.read_file(shadow)
    ran_as = {int(uid) for line in host.read_file(uids).splitlines() for uid in line.split()[:2]}
    assert ran_as == {build_uid} and 0 not in ran_as and app_uid not in ran_as
    venv = f"{ROOT}/releases/d-BUILDER08/venv/"
    loose = host.run(["find", venv, "(", "!", "-user", "root", "-o", "!", "-group", "root", "-o",
                      "(", "!", "-type", "l", "-perm", "/022", ")", ")", "-print"]).stdout
    assert loose == "" and host.run(["test", "-f", f"{venv}.bingo-venv-complete"]).returncode == 0
    assert host.run(["pgrep", "-u", "bingo-build"], check=False).returncode == 1  # nothing left running
    assert host.run(["ls", "-A", "/var/lib/bingo-host/build-work"]).stdout == ""
    # uv's cache: the account's alone (the app user can neither read nor write what builds
    # read), on the releases' file system, its linked files sealed with the venv.
    assert host.run(["stat", "-c", "%U %a", f"{ROOT}/uv-cache"]).stdout.split() == ["bingo-build", "700"]
    assert host.run(["runuser", "-u", "music-bingo", "--", "ls", f"{ROOT}/uv-cache"],
                    check=False).returncode != 0
    devices = host.run(["stat", "-c", "%d", f"{ROOT}/uv-cache", f"{ROOT}/venvs"]).stdout.split()
    assert devices[0] == devices[1], devices
    linked = host.run(["find", venv, "-type", "f", "-links", "+1", "-print", "-quit"]).stdout.strip()
    assert linked, "uv linked nothing from its cache"
    assert health_release(host) == "d-BUILDER08"
    again = host.run([BIN, "bootstrap"], check=False)  # the account and its directories are there
    assert "already converged, nothing changed" in again.stdout, again.stdout + again.stderr
