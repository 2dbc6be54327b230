"""Bootstrap killed with SIGKILL at its most delicate moments. (A data volume adopted by a new
root is the last test of tests/test_restore_host.py.)

Each case kills `bingo-host bootstrap` (and the command it was running) from a watcher inside the
test host the instant the moment arrives, then runs bootstrap again: it must converge to the
same host.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from tests.conftest import BIN, CONFIG, host_config

KILL_WHEN = r"""
# Wait (busy, so the kill lands within milliseconds) for the moment, then SIGKILL bootstrap and
# the command it runs, as a timeout or a power cut would ([/] keeps pkill off this script).
until {probe}; do :; done
pkill -9 -f '[{b0}]{brest} bootstrap'
{also}
echo killed
"""


def killed_bootstrap(host, probe: str, also: str = "", timeout: float = 300) -> str:
    """Run bootstrap with the watcher beside it; when the moment never comes (bootstrap ended or
    failed before it), fail with what bootstrap said instead of waiting out the timeout."""
    watcher = host.popen(["sh", "-c", KILL_WHEN.format(probe=probe, b0=BIN[0], brest=BIN[1:], also=also)])
    run = host.popen([BIN, "bootstrap"], stderr=subprocess.STDOUT)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.append(run.stdout.read()), daemon=True)
    reader.start()  # read as it runs: a full pipe would stop bootstrap before the moment
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, _ = watcher.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if run.poll() is not None or time.monotonic() > deadline:
                    try:  # bootstrap just killed: the watcher ends a moment later
                        out, _ = watcher.communicate(timeout=5)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    reader.join(10)
                    pytest.fail(f"the moment ({probe}) never came: bootstrap exit {run.poll()}, it said:\n"
                                + "".join(said)[-3000:])
    finally:
        watcher.kill()
    run.wait(timeout=60)
    assert run.returncode == -9 or run.returncode == 137, run.returncode
    assert "killed" in out
    return out


def converges(host) -> str:
    again = host.run([BIN, "bootstrap"], check=False, timeout=1200)
    assert again.returncode == 0, again.stdout + again.stderr
    settled = host.run([BIN, "bootstrap"], check=False, timeout=600)
    assert settled.returncode == 0 and "nothing changed" in settled.stdout, settled.stdout
    return again.stdout


@pytest.fixture(scope="module")
def persistent_volume(tmp_path_factory):
    """A loop device that outlives test hosts, like an EBS volume outlives an instance."""
    backing = tmp_path_factory.mktemp("ebs") / "data.img"
    with open(backing, "wb") as f:
        f.truncate(1024 * 1024 * 1024)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


@pytest.fixture(scope="module")
def first_host(host_pool, persistent_volume):
    host = host_pool.fresh()
    try:
        host.put_file(CONFIG, host_config(persistent_volume), mode=0o600)
        yield host
    finally:
        host.shutdown()


def test_dry_run_on_a_bare_host_plans_everything_and_changes_nothing(first_host, persistent_volume):
    plan = first_host.run([BIN, "bootstrap", "--dry-run"], check=False, timeout=600)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for step in ("swap", "packages", "secrets", "volume", "mariadb", "app", "uwsgi", "nginx", "timers"):
        assert f"\n{step}" in "\n" + plan.stdout and "would change" in plan.stdout
    assert "nothing was changed" in plan.stdout
    assert first_host.run(["dpkg", "-s", "nginx"], check=False).returncode != 0
    assert first_host.run(["test", "-e", "/etc/bingo-host/db-password"], check=False).returncode != 0
    assert first_host.run(["blkid", "-p", persistent_volume], check=False).returncode == 2  # still blank
    assert "bingo-host" not in first_host.read_file("/etc/fstab")


# mkfs.ext4 of the volume takes a fraction of a second: a watcher busy-polling for it missed it
# whenever the machine was loaded (CI: bootstrap ran to the end). So bootstrap's mkfs.ext4 (found
# first on PATH) starts the real one and stops it at once: it is caught mid-way, whatever the load.
MKFS_SHIM = "/usr/local/sbin/mkfs.ext4"
SHIM = """#!/bin/sh
/sbin/mkfs.ext4 "$@" &
kill -STOP $!
touch /run/bingo-test-mkfs-started
wait
"""


def test_killed_during_mkfs_then_rerun_converges(first_host, persistent_volume):
    first_host.put_file(MKFS_SHIM, SHIM, mode=0o755)
    try:
        killed_bootstrap(first_host, "test -e /run/bingo-test-mkfs-started", also="pkill -9 -x mkfs.ext4")
    finally:
        first_host.run(["rm", "-f", MKFS_SHIM, "/run/bingo-test-mkfs-started"])
    assert first_host.run(["pgrep", "-x", "mkfs.ext4"], check=False).returncode == 1  # none left
    out = converges(first_host)
    assert "mkfs" in out or "format" in out
    label = first_host.run(["blkid", "-s", "LABEL", "-o", "value", persistent_volume]).stdout.strip()
    assert label == "bingo-db"
    assert first_host.testinfra.mount_point("/var/lib/mysql").exists


def test_killed_during_mariadb_initialisation_then_rerun_converges(first_host):
    first_host.run(["systemctl", "stop", "mariadb"])
    first_host.run(["sh", "-c", "mv /var/lib/mysql/data /var/lib/mysql/old-data-$(date +%s)"])
    killed_bootstrap(first_host, "pgrep -f '[m]ariadb-install-db' >/dev/null",
                     also="pkill -9 -f '[m]ariadb-install-db'; pkill -9 -f '[m]ariadbd.*bootstrap'")
    assert first_host.run(["test", "-d", "/var/lib/mysql/data/mysql"], check=False).returncode != 0
    out = converges(first_host)
    assert "initialise a new MariaDB datadir" in out
    assert first_host.testinfra.service("mariadb").is_running


def nginx_workers(host) -> set[str]:
    return set(host.run(["pgrep", "-f", "nginx: worker"], check=False).stdout.split())


def test_killed_between_nginx_write_and_reload_then_rerun_reloads(first_host, persistent_volume):
    site = "/etc/nginx/conf.d/music-bingo.conf"
    workers = nginx_workers(first_host)
    assert workers
    first_host.put_file(CONFIG, host_config(persistent_volume, app={"server_name": "bingo.example.com"}),
                        mode=0o600)
    killed_bootstrap(first_host, f"grep -q bingo.example.com {site}")
    assert nginx_workers(first_host) == workers  # killed before the reload
    out = converges(first_host)
    assert "reload nginx.service" in out
    assert nginx_workers(first_host).isdisjoint(workers)  # reloaded: new workers
    page = first_host.run(["curl", "-s", "-H", "Host: bingo.example.com", "http://127.0.0.1/"])
    assert "no release has been deployed yet" in page.stdout
