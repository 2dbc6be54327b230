"""BeforeInstall upgrading the host's bingo-host from a newer wheel in the bundle, for real: the
bundles go through the real CodeDeploy agent on the shared bootstrapped host (last, since it
changes the host's bingo-host; the link is put back afterwards). And a cfn-init re-run (what
cfn-hup does on a stack update) with the stack's wheel older than that upgrade keeps the newer
bingo-host: the template's own commands run on the host.
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
from tests.harness.host import DEFAULT_ENV, WHEELHOUSE_INSIDE
from tests.templates import SAMPLE_PARAMETERS, TEMPLATES, init_commands

# The new virtualenv's dependencies come from the harness's wheelhouse (plain pip settings).
UPGRADE_ENV = {**ENV, "PIP_FIND_LINKS": WHEELHOUSE_INSIDE}
# cfn-init's commands: the same, offline, and `aws` the stand-in below (no AWS CLI here).
CFN_BIN = "/tmp/cfn-bin"
CFN_ENV = {**UPGRADE_ENV, "PIP_NO_INDEX": "1", "PATH": f"{CFN_BIN}:{DEFAULT_ENV['PATH']}"}
S3_DIR = "/tmp/cfn-s3"
AWS_S3_CP = f"""#!/bin/sh
# Stands in for `aws s3 cp --region R s3://BUCKET/KEY DEST`: BUCKET/KEY from {S3_DIR}.
[ "$1 $2 $3" = "s3 cp --region" ] && [ $# = 6 ] || {{ echo "aws stand-in: $*" >&2; exit 64; }}
exec cp "{S3_DIR}/${{5#s3://}}" "$6"
"""


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


@pytest.fixture
def cfn_host(host_pool, wheel):
    """The shared bootstrapped host, its link and /opt/bingo-host/venv put back afterwards."""
    host = host_pool.bootstrapped().host
    original = host.run(["readlink", BIN]).stdout.strip()
    yield host
    host.run(["ln", "-sfn", original, BIN])
    host.put_file(f"/tmp/bingo-wheels/{wheel.name}", wheel.read_bytes())
    host.run(["/opt/bingo-host/venv/bin/pip", "install", "-q", "--no-deps", "--force-reinstall",
              "--no-index", f"/tmp/bingo-wheels/{wheel.name}"])
    host.run_shell(f"rm -rf /opt/bingo-host/wheels {CFN_BIN} {S3_DIR}; "
                   f"for v in /opt/bingo-host/venv-*; do [ $v -ef $(dirname $(dirname {original})) ] "
                   "|| rm -rf $v; done")


def cfn_init(host, stack_wheel: Path) -> str:
    """What cfn-init runs on a stack update, from the template (install_bingo_host's commands,
    then bootstrap's bingo-host command), with the stack's WheelKey naming stack_wheel."""
    template = TEMPLATES["single-instance.yaml"]
    key = f"wheels/{stack_wheel.name}"
    host.put_file(f"{S3_DIR}/{SAMPLE_PARAMETERS['BundleBucketName']}/{key}", stack_wheel.read_bytes())
    host.put_file(f"{CFN_BIN}/aws", AWS_S3_CP, mode=0o755)
    steps = init_commands(template, "install_bingo_host", {"WheelKey": key})
    steps += [s for s in init_commands(template, "bootstrap") if "bingo-host bootstrap" in s[1]]
    assert len(steps) == 4, steps
    out = []
    for name, command, test in steps:
        if test and host.run_shell(test, env=CFN_ENV, check=False).returncode:
            continue
        r = host.run_shell(command, env=CFN_ENV, check=False, timeout=1200)
        out.append(r.stdout + r.stderr)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
    return "".join(out)


def version_of(host, command: str) -> str:
    return host.run([command, "--version"]).stdout.split()[-1]


def test_a_cfn_init_rerun_with_an_older_wheel_leaves_the_newer_bingo_host(cfn_host, tmp_path):
    major, minor = (int(x) for x in __version__.split(".")[:2])
    newer, older = f"{major}.{minor + 1}.0", f"{major}.{minor + 1}.0rc1"  # rc1 comes first (PEP 440)
    # As a bundle's upgrade leaves the host: the newer version in a venv of its own, linked.
    cfn_host.install_wheel(build_wheel(tmp_path, newer), venv=f"/opt/bingo-host/venv-{newer}")
    out = cfn_init(cfn_host, build_wheel(tmp_path, older))
    assert f"bingo-host {newer} is installed; the stack's wheel ({older}) is not newer" in out
    assert version_of(cfn_host, "/opt/bingo-host/venv/bin/bingo-host") == __version__  # untouched
    # cfn-init's bootstrap (the venv's older copy) ran the newer one, which left the link.
    assert f"bingo-host {newer} at {BIN} is newer than this {__version__}" in out
    assert cfn_host.run(["readlink", BIN]).stdout.strip() == f"/opt/bingo-host/venv-{newer}/bin/bingo-host"
    assert version_of(cfn_host, BIN) == newer


def test_a_cfn_init_rerun_with_a_newer_wheel_installs_it_at_the_locks_versions(cfn_host, tmp_path):
    major, minor = (int(x) for x in __version__.split(".")[:2])
    newest = f"{major}.{minor + 1}.1"
    out = cfn_init(cfn_host, build_wheel(tmp_path, newest))
    assert f"bingo-host {newest} installed in /opt/bingo-host/venv" in out
    assert cfn_host.run(["readlink", BIN]).stdout.strip() == "/opt/bingo-host/venv/bin/bingo-host"
    assert version_of(cfn_host, BIN) == newest
    frozen = set(cfn_host.run(["/opt/bingo-host/venv/bin/pip", "freeze", "--all"]).stdout.lower().split())
    lock = {line.lower() for line in (REPO / "bingo_host" / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    assert lock <= frozen, sorted(lock - frozen)
