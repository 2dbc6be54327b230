"""BeforeInstall upgrading the host's bingo-host from a newer wheel in the bundle, for real: the
bundles go through the real CodeDeploy agent on the shared bootstrapped host (last, since it
changes the host's bingo-host; the link is put back afterwards).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bingo_host import __version__
from tests import codedeploy_agent as agent
from tests.conftest import BIN
from tests.deploying import ENV, REPO, Bundles, health_release, record, serving
from tests.harness.host import WHEELHOUSE_INSIDE

# The new virtualenv's dependencies come from the harness's wheelhouse (plain pip settings).
UPGRADE_ENV = {**ENV, "PIP_FIND_LINKS": WHEELHOUSE_INSIDE}


def build_wheel(tmp: Path, version: str, broken: bool = False) -> Path:
    """bingo-host from this tree with another version (and, if broken, a CLI that cannot start)."""
    tree = tmp / f"src-{version}"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True,
                           text=True).stdout.split("\0")
    for name in filter(None, files):
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())
        target.chmod((REPO / name).stat().st_mode)
    init = tree / "bingo_host" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', f'"{version}"'))
    if broken:
        cli = tree / "bingo_host" / "cli" / "__init__.py"
        cli.write_text('raise RuntimeError("this bingo-host is broken on purpose")\n' + cli.read_text())
    out = tmp / f"dist-{version}"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
                   check=True)
    (wheel,) = out.glob("bingo_host-*.whl")
    return wheel


@pytest.fixture(scope="module")
def host(host_pool):
    bootstrapped = host_pool.bootstrapped()
    assert bootstrapped.first.returncode == 0, bootstrapped.first.stdout + bootstrapped.first.stderr
    host = bootstrapped.host
    agent.install(host)
    original = host.run(["readlink", BIN]).stdout.strip()
    yield host
    host.run(["ln", "-sfn", original, BIN])
    host.run_shell("rm -rf /opt/bingo-host/venv-*")


@pytest.fixture(scope="module")
def bundles(host, wheel, tmp_path_factory):
    return Bundles(host, wheel, tmp_path_factory.mktemp("upgrade-bundles"))


def installed_version(host) -> str:
    return host.run([BIN, "--version"]).stdout.strip()


@pytest.mark.parametrize("kind", ["broken", "corrupt"])
def test_a_bad_new_version_leaves_the_old_toolkit_working(host, bundles, tmp_path, kind):
    version = f"{__version__}.post{9 if kind == 'broken' else 8}"
    if kind == "broken":
        wheel = build_wheel(tmp_path, version, broken=True)
    else:
        wheel = tmp_path / f"bingo_host-{version}-py3-none-any.whl"
        wheel.write_bytes(b"this is not a zip file")
    before_version, before_release = installed_version(host), serving(host)
    r = agent.deploy(host, bundles.make(f"upgrade-{kind}", wheel=wheel), "zip", env=UPGRADE_ENV)
    assert r.returncode != 0, r.stdout + r.stderr
    dep = agent.deployment_id(r.stdout)
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep}/logs/scripts.log")
    assert f"bingo-host {version} from the bundle failed to install or run" in log
    assert f"this host keeps bingo-host {__version__}" in log
    assert installed_version(host) == before_version
    assert host.run(["test", "-e", f"/opt/bingo-host/venv-{version}"], check=False).returncode != 0
    assert serving(host) == before_release and health_release(host) == before_release
    assert host.run([BIN, "status"], check=False).returncode == 0


def test_a_newer_wheel_upgrades_and_runs_the_rest_of_the_deployment(host, bundles, tmp_path):
    version = f"{__version__}.post1"
    wheel = build_wheel(tmp_path, version)
    r = agent.deploy(host, bundles.make("upgrade-good", wheel=wheel), "zip", env=UPGRADE_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    dep = agent.deployment_id(r.stdout)
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep}/logs/scripts.log")
    assert f"upgrading {__version__} -> {version}" in log
    assert version in installed_version(host)
    assert host.run(["readlink", BIN]).stdout.strip() == f"/opt/bingo-host/venv-{version}/bin/bingo-host"
    # AfterInstall (a later hook of the same deployment) ran the new version.
    assert record(host, dep)["bingo_host_version"] == version
    assert health_release(host) == dep
