"""Shared fixtures: the bingo-host wheel, and systemd test hosts bootstrapped with it.

A test host in the machine's network namespace runs alone, so hosts come from one pool: the
bootstrapped host is booted once per session and shared by every test that does not need a
fresh root; `host_pool.fresh()` shuts the shared one down first (it is rebuilt on next use).
`host_pool.boot_beside()`'s hosts, each in a namespace of its own, run beside it and each other.
"""

from __future__ import annotations

import glob
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bingo_host import logs

# Helpers moved out of test modules: their asserts still report as a test module's do (plugins'
# are rewritten anyway).
pytest.register_assert_rewrite("tests.ec2_site", "tests.status_schema", "tests.templates")
# Fixtures more than one test module uses live in these plugins (a test module never imports
# another: tests/test_layout_of_tests.py checks).
pytest_plugins = ["tests.harness.fixtures", "tests.aws_servers", "tests.step_host", "tests.kms",
                  "tests.revisions", "tests.backup_bucket"]

REPO = Path(__file__).resolve().parent.parent
BIN = "/usr/local/bin/bingo-host"
CONFIG = "/etc/bingo-host/config.yaml"


def host_config(device: str, **overrides: dict) -> str:
    """The test hosts' config: the loop device as data volume, small swap, the override the
    fixture app's pins need (the real app's: mysql==0.0.2 no longer builds); sections overridable.
    The firewall step is off: these hosts share the machine's network namespace, so its nftables
    table would be the machine's (tests/test_firewall_host.py runs it in a namespace of its own)."""
    import yaml

    data = {"volume": {"device": device}, "swap": {"size": "32M"},
            "app": {"processes": 2, "requirement_overrides": ["mysql==0.0.3"]},
            "firewall": {"enabled": False}}
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return yaml.safe_dump(data, sort_keys=False)


@dataclass
class Bootstrapped:
    host: object
    volume: object
    first: subprocess.CompletedProcess
    first_seconds: float

    def bingo(self, *args, check=False, timeout=1800):
        return self.host.run([BIN, *args], check=check, timeout=timeout)


class HostPool:
    def __init__(self, wheel: Path):
        self.wheel = wheel
        self._shared: Bootstrapped | None = None

    def _boot(self, wait: float = 1800, memory_mb: int | None = None, netns: str | None = None,
              root_mode: str | None = None):
        """Boot a host; while another process's test host runs (one per machine), wait for it."""
        from tests.harness import HarnessError, TestHost

        deadline = time.monotonic() + wait
        while True:
            try:
                host = TestHost.boot(memory_mb=memory_mb, netns=netns, root_mode=root_mode)
                break
            except HarnessError as exc:
                if "another bingo-host test host" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(5)
        try:
            host.install_wheel(self.wheel)
        except BaseException:
            host.shutdown()
            raise
        return host

    def bootstrapped(self) -> Bootstrapped:
        if self._shared is None:
            host = self._boot()
            try:
                volume = host.attach_volume(size_mb=512)
                host.put_file(CONFIG, host_config(volume.device), mode=0o600)
                start = time.monotonic()
                first = host.run([BIN, "bootstrap"], check=False, timeout=1800)
                self._shared = Bootstrapped(host, volume, first, time.monotonic() - start)
            except BaseException:
                host.shutdown()
                raise
        return self._shared

    def fresh(self, memory_mb: int | None = None, netns: str | None = None, root_mode: str | None = None):
        """A new test host with bingo-host installed and nothing else (memory_mb: capped like a
        small instance; netns: booted into that network namespace; root_mode: see TestHost.boot);
        the caller shuts it down."""
        self.close()
        return self._boot(memory_mb=memory_mb, netns=netns, root_mode=root_mode)

    def boot_beside(self, netns: str):
        """A new test host with bingo-host installed, in network namespace netns, beside any other
        (tests/ha_rig.py; tests/harness/host.py says why it may). The caller shuts it down."""
        return self._boot(netns=netns)

    def close(self):
        if self._shared is not None:
            self._shared.host.shutdown()
            self._shared = None


@pytest.fixture(scope="session", autouse=True)
def _locks_in_a_directory_of_the_sessions(tmp_path_factory):
    """bingo-host's locks (ops/lock.py) in this session's own directory, for the CLI's
    subprocesses too: not /run/bingo-host of the machine, which other sessions share."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BINGO_HOST_LOCK_DIR", str(tmp_path_factory.mktemp("bingo-host") / "locks"))
        yield


@pytest.fixture(autouse=True)
def _log_handlers_as_they_were(monkeypatch):
    """A command run through CliRunner installs bingo-host's log handlers (logs.install): each
    test starts and ends without them, and none writes to this machine's journal."""
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", "/nonexistent/bingo-host-tests/dev-log")
    monkeypatch.setattr(logs, "JOURNALD_SOCKET", "/nonexistent/bingo-host-tests/journal-socket")
    root, package = logging.getLogger(), logging.getLogger(logs.PACKAGE)
    saved = (list(root.handlers), list(package.handlers), package.level)
    yield
    root.handlers[:], package.handlers[:] = saved[0], saved[1]
    package.setLevel(saved[2])


MACHINE_TREES = ("/etc/bingo-host", "/var/lib/bingo-host", "/opt/bingo-host", "/var/cache/bingo-host")


def _machine_files() -> set[str]:
    import os

    return {os.path.join(d, f) for top in MACHINE_TREES for d, _, files in os.walk(top) for f in files}


@pytest.fixture(scope="session", autouse=True)
def _the_machines_own_trees_stay_untouched():
    """The suite acts on test hosts and temporary directories, never on this machine's own
    bingo-host trees: a file that appears there (a default path bound before a test could move
    it) fails the session."""
    before = _machine_files()
    yield
    added = sorted(_machine_files() - before)
    assert not added, f"tests wrote this machine's own files: {added[:5]}"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # The test environment has the build requirements: an isolated build env costs ~2.5 s.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True)
    return Path(glob.glob(str(out / "bingo_host-*.whl"))[0])


@pytest.fixture(scope="session")
def host_pool(wheel):
    import os

    if os.geteuid() != 0:
        pytest.skip("systemd test hosts need root")
    pool = HostPool(wheel)
    yield pool
    pool.close()


@pytest.fixture
def bootstrapped(host_pool) -> Bootstrapped:
    return host_pool.bootstrapped()


@pytest.fixture(scope="module")
def testhost(host_pool):
    """A fresh (not bootstrapped) test host for one module; overrides the harness plugin's
    session-wide one so that every host of the session comes from the one pool."""
    host = host_pool.fresh()
    try:
        yield host
    finally:
        host.shutdown()


# Modules that need fresh roots run first, so the shared bootstrapped host is booted once;
# deploys run last on it, in this order (every other module expects the placeholder page; the
# real agent deploys first, the self-upgrade last since it changes the host's bingo-host).
FRESH_HOST_MODULES = ("test_harness", "test_volume", "test_swap", "test_bootstrap_recovery",
                      "test_resize_host", "test_restore_host", "test_firewall_host", "test_first_bind",
                      "test_quick_start")
LAST_MODULES = ("test_codedeploy_agent", "test_deploy", "test_external_db", "test_self_upgrade")


# A test that stands on any of these needs a kernel (a booted test host or a loop device): it is
# marked `host`, so `pytest -m "not host"` runs the rest in minutes.
HOST_FIXTURES = {"host_pool", "testhost", "bootstrapped", "loop_volume", "persistent_volume", "machine_loop",
                 "loop_mariadb"}


def pytest_collection_modifyitems(items):
    for item in items:
        if HOST_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.host)

    def rank(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        if name in FRESH_HOST_MODULES:
            return FRESH_HOST_MODULES.index(name)
        if name in LAST_MODULES:
            return len(FRESH_HOST_MODULES) + 1 + LAST_MODULES.index(name)
        return len(FRESH_HOST_MODULES)

    items.sort(key=rank)  # stable: keeps pytest's order within each group
