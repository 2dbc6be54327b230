"""Tests of the test host harness itself (needs root; skips otherwise)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import CommandFailed, TestHost
from tests.harness import host as harness_host



def _pids_with_root_under(path: Path) -> list[int]:
    prefix = str(path)
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "root").startswith(prefix):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.mark.host
def test_boot_then_shutdown_leaves_nothing():
    """Its own boot (runs first, before the session `testhost` holds the lock) and full teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if harness_host._LIVE:
        pytest.skip("a test host of this pytest session is already up (one per machine)")
    host = TestHost.boot()
    root, hostdir = host.root, host.dir
    try:
        vol = host.attach_volume(size_mb=64)
        host.run_shell(f"mkfs.ext4 -q {vol.device} && mkdir -p /vol && mount {vol.device} /vol")
        host.run_shell("dd if=/dev/zero of=/swapfile bs=1M count=16 status=none && chmod 600 /swapfile"
                       " && mkswap /swapfile >/dev/null && swapon /swapfile")
        assert str(root / "swapfile") in Path("/proc/swaps").read_text()
        bg = host.popen(["sleep", "1000"])
        assert _pids_with_root_under(root)
    finally:
        host.shutdown()
    host.shutdown()  # idempotent
    assert bg.wait(timeout=5) is not None
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    assert str(root) not in Path("/proc/swaps").read_text()
    r = subprocess.run(["losetup", "-j", str(vol.backing)], capture_output=True, text=True)
    assert r.stdout.strip() == ""
    assert not any(str(hostdir) in line for line in
                   subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines())
    assert _pids_with_root_under(root) == []
    assert not hostdir.exists()


@pytest.mark.host
def test_hosts_in_namespaces_of_their_own_run_at_once():
    """Two hosts, each in a network namespace of its own, run side by side (the HA rig's case):
    each systemd has cgroups of its own, and the first one's root and loop device are gone when
    it shuts down while the second still runs (the second's mount namespace let go of them)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from tests.harness import netns

    with netns.network_namespace() as ns_a, netns.network_namespace() as ns_b:
        first = TestHost.boot(netns=ns_a)
        try:
            second = TestHost.boot(netns=ns_b, lock_wait=5)
            try:
                groups = [h.run(["cat", "/proc/1/cgroup"]).stdout for h in (first, second)]
                mine = [re.search(r"^\d+:name=systemd:(/[^/\n]+)", g, re.M).group(1) for g in groups]
                assert mine == [first.cgroup, second.cgroup] and len(set(mine)) == 2, groups
                root, image_file = first.root, first.dir / "root.img"
                first.shutdown()
                assert str(root) not in Path("/proc/self/mountinfo").read_text()
                r = subprocess.run(["losetup", "-j", str(image_file)], capture_output=True, text=True)
                assert r.stdout.strip() == "", r.stdout
                assert second.run(["systemctl", "is-system-running"], check=False).stdout.strip() in (
                    "running", "degraded")
            finally:
                second.shutdown()
        finally:
            first.shutdown()


@pytest.mark.host
def test_reboot_keeps_the_root_and_volumes_and_takes_a_new_cap():
    """reboot(memory_mb=...): a stop/start onto another instance type. Its own boot, before the
    module's `testhost` holds the lock (one host per machine). The swap the host turned on is off
    on the machine once the power-off is done; the old cgroup goes, the new one caps systemd; a
    volume in fstab by UUID does not hold the boot up (no udev: its device never shows up)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if harness_host._LIVE:
        pytest.skip("a test host of this pytest session is already up (one per machine)")
    host = TestHost.boot(memory_mb=384)
    hostdir = host.dir
    try:
        first_pid, first_cgroup = host.pid, host.memory_cgroup
        vol = host.attach_volume(size_mb=16)
        host.run(["mkfs.ext4", "-q", vol.device])
        uuid = host.run(["blkid", "-s", "UUID", "-o", "value", vol.device]).stdout.strip()
        host.run_shell(f"mkdir /vol && echo 'UUID={uuid} /vol ext4 defaults,nofail 0 2' >> /etc/fstab")
        host.put_file("/etc/kept-across-reboots", "yes\n")
        host.run_shell("dd if=/dev/zero of=/swapfile bs=1M count=16 status=none && chmod 600 /swapfile"
                       " && mkswap /swapfile >/dev/null && swapon /swapfile")
        assert str(host.root / "swapfile") in Path("/proc/swaps").read_text()
        host.reboot(memory_mb=640)
        assert host.pid != first_pid and host.alive
        assert str(host.root / "swapfile") not in Path("/proc/swaps").read_text()
        assert not first_cgroup.exists()
        assert (host.memory_cgroup / "memory.limit_in_bytes").read_text().strip() == str(640 << 20)
        inside = host.read_file("/proc/1/cgroup")
        assert f":memory:{host.cgroup}" in inside, inside
        assert host.read_file("/etc/kept-across-reboots") == "yes\n"
        assert vol.attached and host.run(["test", "-b", vol.device]).returncode == 0
        # No udev announces the volume: its fstab mount gave up at once instead of after 90 s.
        assert host.timings["reboot_boot"] < 60, host.timings
        assert host.run(["findmnt", "/vol"], check=False).returncode == 1
        host.run(["mount", "/vol"])  # what bootstrap's volume step does
        host.reboot()  # the cap it had
        assert (host.memory_cgroup / "memory.limit_in_bytes").read_text().strip() == str(640 << 20)
        assert host.run(["systemctl", "is-system-running"], check=False).stdout.strip() in ("running", "degraded")
        last_cgroup = host.memory_cgroup
    finally:
        host.shutdown()
    assert not last_cgroup.exists() and not hostdir.exists()
    assert not vol.attached


def test_boots_systemd_as_pid1(testhost):
    assert testhost.read_file("/proc/1/comm").strip() == "systemd"
    r = testhost.run(["systemctl", "is-system-running"], check=False)
    assert r.stdout.strip() in ("running", "degraded"), r
    assert testhost.run(["hostname"]).stdout.strip() == "bingo-test-host"
    # the machine's environment does not leak in
    assert "PIP_FIND_LINKS" not in testhost.run(["env"]).stdout
    # pre-downloaded but not installed
    assert testhost.run_shell("ls /var/cache/apt/archives/nginx-common_*.deb").returncode == 0
    assert testhost.run(["dpkg", "-s", "nginx"], check=False).returncode != 0
    with pytest.raises(CommandFailed, match="exited 3"):
        testhost.run_shell("echo out; echo err >&2; exit 3")


def test_unit_starts_and_testinfra_sees_it(testhost):
    testhost.put_file("/usr/local/bin/harness-sleeper", "#!/bin/sh\nexec sleep 1000\n", mode=0o755)
    testhost.put_file("/etc/systemd/system/harness-sleeper.service",
                      "[Service]\nExecStart=/usr/local/bin/harness-sleeper\n")
    testhost.run(["systemctl", "daemon-reload"])
    testhost.run(["systemctl", "start", "harness-sleeper"])
    ti = testhost.testinfra
    svc = ti.service("harness-sleeper")
    assert svc.is_running
    assert ti.file("/usr/local/bin/harness-sleeper").mode == 0o755
    assert ti.mount_point("/").exists
    assert ti.run("echo hi").stdout == "hi\n"
    testhost.run(["systemctl", "stop", "harness-sleeper"])
    assert not ti.service("harness-sleeper").is_running


def test_popen_kill_reaches_inside(testhost):
    p = testhost.popen(["sleep", "1000"])

    def command_of(pid):
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None

    # nsenter's child is nsenter until it has exec'd the command: wait for the exec (a busy
    # machine, e.g. the unit tests running beside, widens that window).
    deadline = time.monotonic() + 30
    while not (p.inner_pid and command_of(p.inner_pid) == "sleep") and time.monotonic() < deadline:
        time.sleep(0.05)
    inner = p.inner_pid
    assert inner and command_of(inner) == "sleep"
    p.kill()
    p.wait(timeout=5)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{inner}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{inner}").exists()


def test_loop_volume_mkfs_mount_fsfreeze(testhost, loop_volume):
    vol = loop_volume(size_mb=64)
    assert re.fullmatch(r"/dev/loop\d+", vol.device)
    assert vol.attached
    testhost.run(["mkfs.ext4", "-q", vol.device])
    testhost.run(["mkdir", "-p", "/data"])
    testhost.run(["mount", vol.device, "/data"])
    testhost.put_file("/data/hello", "world")
    testhost.run(["fsfreeze", "-f", "/data"])
    testhost.run(["fsfreeze", "-u", "/data"])
    assert testhost.run(["findmnt", "-n", "-o", "SOURCE", "/data"]).stdout.strip() == vol.device
    assert testhost.read_file("/data/hello") == "world"
    # the mount lives only in the test host's mount namespace
    assert "/data " not in Path("/proc/self/mountinfo").read_text()
    # detach() is safe on a still-mounted volume and idempotent
    vol.detach()
    vol.detach()
    assert not vol.attached
    assert testhost.run(["findmnt", "/data"], check=False).returncode != 0
