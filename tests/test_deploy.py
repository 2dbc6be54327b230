"""Zero-downtime releases on the shared bootstrapped systemd test host: `bingo-host deploy`
runs the bundle's appspec.yml and hooks as the CodeDeploy agent would.

The tests run in file order and build on each other (one host, one release history):
first deploy -> venv reuse -> failed pip never switched to -> failed health rolled back ->
killed mid-AfterInstall then redeployed -> CRLF hook refused -> rollback by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"
ROOT = "/var/www/music-bingo"
ENV = {"BINGO_HOST_VALIDATE_TIMEOUT": "8"}


def http(path: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def serving(host) -> str:
    return host.run(["readlink", f"{ROOT}/current"]).stdout.strip().rsplit("/", 1)[-1]


def health_release() -> str:
    status, body = http("/api/health")
    assert status == 200, body
    return json.loads(body)["release"]


class Bundles:
    """Variants of the sample app, bundled on this machine with `bingo-host bundle` and copied in."""

    def __init__(self, host, wheel: Path, tmp: Path):
        self.host, self.wheel, self.tmp = host, wheel, tmp
        self.n = 0

    def make(self, name: str, requirements: str | None = None, note: str | None = None,
             fail_health: bool = False) -> str:
        app = self.tmp / f"app-{name}"
        shutil.copytree(SAMPLE, app)
        if requirements is not None:
            (app / "requirements.txt").write_text(requirements)
        if note is not None:
            (app / "musicbingo" / "__init__.py").write_text(f'RELEASE_NOTE = "{note}"\n')
        if fail_health:
            (app / "musicbingo" / "FAIL_HEALTH").write_text("yes\n")
        out = self.tmp / f"{name}.tar.gz"
        subprocess.run([str(REPO / ".venv/bin/python"), "-m", "bingo_host", "bundle", "--app", str(app),
                        "--out", str(out), "--wheel", str(self.wheel)], check=True, cwd=REPO,
                       capture_output=True)
        inside = f"/root/bundles/{name}.tar.gz"
        self.host.put_file(inside, out.read_bytes())
        return inside


@pytest.fixture(scope="module")
def host(host_pool):
    bootstrapped = host_pool.bootstrapped()  # the session's shared host
    assert bootstrapped.first.returncode == 0, bootstrapped.first.stdout + bootstrapped.first.stderr
    return bootstrapped.host


@pytest.fixture(scope="module")
def bundles(host, wheel, tmp_path_factory):
    return Bundles(host, wheel, tmp_path_factory.mktemp("bundles"))


def deploy(host, bundle: str, deployment_id: str, timeout: float = 1200):
    return host.run([BIN, "deploy", bundle, "--deployment-id", deployment_id], env=ENV, check=False,
                    timeout=timeout)


def record(host, release: str) -> dict:
    return json.loads(host.read_file(f"{ROOT}/releases/{release}/bingo-release.json"))


def deploy_state(host) -> dict:
    return json.loads(host.read_file("/var/lib/bingo-host/deploy.json"))


def test_first_deploy_replaces_the_placeholder(host, bundles):
    before = serving(host)
    r = deploy(host, bundles.make("first"), "d-FIRST0001")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # Every event ran, in the agent's order, with its output prefixed.
    positions = [out.index(f"[{event}]") for event in
                 ("BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService")]
    assert positions == sorted(positions)
    assert "[AfterInstall] virtualenv: requirements changed, building" in out
    if before == "placeholder":
        assert "switch: /var/www/music-bingo/current -> d-FIRST0001" in out
    assert serving(host) == "d-FIRST0001"
    assert health_release() == "d-FIRST0001"
    status, body = http("/")
    assert status == 200 and "music bingo sample client" in body
    rec = record(host, "d-FIRST0001")
    assert rec["deployment_id"] == "d-FIRST0001" and rec["validated_at"] and not rec["failed"]
    assert rec["bundle"]["type"] == "file" and len(rec["bundle"]["sha256"]) == 64
    assert deploy_state(host)["status"] == "succeeded"
    # The release is root's and read-only to the app; bingo.ini comes from shared/.
    ti = host.testinfra
    assert ti.file(f"{ROOT}/releases/d-FIRST0001/application.py").user == "root"
    assert ti.file(f"{ROOT}/releases/d-FIRST0001/application.py").mode == 0o644
    assert ti.file(f"{ROOT}/releases/d-FIRST0001/bingo.ini").linked_to == f"{ROOT}/shared/bingo.ini"
    assert host.run(["find", f"{ROOT}/staging", "-mindepth", "1"]).stdout == ""


def test_same_requirements_reuse_the_virtualenv(host, bundles):
    r = deploy(host, bundles.make("second", note="second"), "d-SECOND002")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "virtualenv: reusing" in r.stdout and "pip install" not in r.stdout
    first = host.run(["stat", "-L", "-c", "%i", f"{ROOT}/releases/d-FIRST0001/venv"]).stdout
    second = host.run(["stat", "-L", "-c", "%i", f"{ROOT}/releases/d-SECOND002/venv"]).stdout
    assert first == second
    assert record(host, "d-SECOND002")["venv_reused"] is True
    assert json.loads(http("/api/health")[1])["note"] == "second"


def test_failed_pip_install_is_never_switched_to(host, bundles):
    bad = "Flask==3.0.3\nPyMySQL==1.1.1\nbingo-host-no-such-package==9.9.9\n"
    r = deploy(host, bundles.make("badpin", requirements=bad), "d-BADPIN003")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "AfterInstall" in r.stderr and "failed" in r.stderr
    assert "[ApplicationStart]" not in r.stdout
    assert serving(host) == "d-SECOND002"
    assert health_release() == "d-SECOND002"
    assert host.run(["test", "-e", f"{ROOT}/releases/d-BADPIN003"], check=False).returncode != 0
    state = deploy_state(host)
    assert state["deployment_id"] == "d-BADPIN003" and state["status"] == "failed"
    assert state["event"] == "AfterInstall"


def test_failed_health_check_rolls_back_by_itself(host, bundles):
    r = deploy(host, bundles.make("unhealthy", fail_health=True), "d-UNHEALTHY")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ValidateService failed, rolled back to d-SECOND002" in r.stderr
    assert "/api/health answered HTTP 500" in r.stderr
    assert serving(host) == "d-SECOND002"
    assert health_release() == "d-SECOND002"
    failed = record(host, "d-UNHEALTHY")["failed"]
    assert failed["event"] == "ValidateService"


def test_deploy_killed_mid_after_install_then_redeployed(host, bundles):
    bundle = bundles.make("killed", requirements="Flask==3.0.3\nPyMySQL==1.1.1\nsix==1.16.0\n",
                          note="after-kill")
    proc = host.popen([BIN, "deploy", bundle, "--deployment-id", "d-KILLED005"], env=ENV)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            # pip is running for the new virtualenv: AfterInstall is half way.
            if host.run(["pgrep", "-f", "pip.*install"], check=False).returncode == 0:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("AfterInstall never reached pip")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)
    assert host.run(["pgrep", "-f", "pip.*install"], check=False).returncode != 0
    assert serving(host) == "d-SECOND002"
    assert health_release() == "d-SECOND002"
    assert deploy_state(host)["status"] == "in-progress"  # nothing could record the kill

    r = deploy(host, bundle, "d-REDEPLOY6")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "taking over from abandoned deployment d-KILLED005" in r.stdout
    assert "removing incomplete" in r.stdout
    assert health_release() == "d-REDEPLOY6"
    assert json.loads(http("/api/health")[1])["note"] == "after-kill"
    left = host.run(["ls", "-A", f"{ROOT}/releases"]).stdout.split()
    assert not [e for e in left if e.endswith(".partial") or e == "d-KILLED005"]


def test_crlf_hook_is_refused_before_anything_changes(host, bundles, tmp_path):
    good = Path(bundles.tmp / "first.tar.gz")
    tree = tmp_path / "tree"
    with tarfile.open(good) as tf:
        tf.extractall(tree)
    hook = tree / "hooks" / "after_install.sh"
    hook.write_bytes(hook.read_bytes().replace(b"\n", b"\r\n"))
    bad = tmp_path / "crlf.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        tf.add(tree, arcname=".")
    host.put_file("/root/bundles/crlf.tar.gz", bad.read_bytes())
    state_before = host.read_file("/var/lib/bingo-host/deploy.json")
    r = deploy(host, "/root/bundles/crlf.tar.gz", "d-CRLF00007")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "CRLF" in r.stderr and "hooks/after_install.sh" in r.stderr
    assert "[BeforeInstall]" not in r.stdout
    assert host.read_file("/var/lib/bingo-host/deploy.json") == state_before
    assert serving(host) == "d-REDEPLOY6"


def test_rollback_by_hand(host):
    r = host.run([BIN, "rollback"], env=ENV, check=False, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # d-UNHEALTHY failed and d-KILLED005 never finished: the previous good release is d-SECOND002.
    assert "rollback: serving d-SECOND002" in r.stdout
    assert serving(host) == "d-SECOND002" and health_release() == "d-SECOND002"
    assert record(host, "d-REDEPLOY6")["failed"]["event"] == "rollback"
