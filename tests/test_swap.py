"""The swap step: its facts' parsers here, its decisions in tests/steps/swap/ (tests/test_steps.py);
what needs a kernel (fallocate/mkswap/swapon, fstab) in the systemd test host further down."""

from __future__ import annotations

import os

import pytest

from bingo_host.facts import mounts
from bingo_host.facts import swap as swap_facts
from bingo_host.errors import BingoHostError
from bingo_host.converge.steps import swap
from tests.step_host import run_step  # vhost: that plugin's fixture, one host for this module

PROC_SWAPS = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
              "/swapfile                               file\t\t32764\t\t0\t\t-2\n"
              "/srv/my\\040swap                         file\t\t1020\t\t0\t\t-3\n")


def test_parse_proc_swaps():
    assert swap_facts.parse_proc_swaps(PROC_SWAPS) == {"/swapfile": 32764, "/srv/my swap": 1020}
    assert swap_facts.parse_proc_swaps("Filename Type Size Used Priority\n") == {}


def test_swap_line():
    assert swap.swap_line() == "/swapfile none swap sw,nofail 0 0 # bingo-host"


def test_signature(tmp_path):
    page = os.sysconf("SC_PAGE_SIZE")
    f = tmp_path / "s"
    f.write_bytes(bytes(page - 10) + b"SWAPSPACE2" + bytes(page))
    assert swap_facts.has_signature(str(f))
    f.write_bytes(bytes(2 * page))
    assert not swap_facts.has_signature(str(f))
    assert not swap_facts.has_signature(str(tmp_path / "missing"))


@pytest.mark.parametrize("fstype", ["overlay", "tmpfs", "nfs4", "fuse.sshfs"])
def test_filesystems_that_cannot_hold_swap(fstype):
    table = mounts.parse_mountinfo(f"1 0 0:5 / / rw - {fstype} none rw\n")
    with pytest.raises(BingoHostError) as e:
        swap.check_filesystem("/swapfile", table)
    assert fstype in str(e.value) and "swap.size: 0" in str(e.value)


def test_ext4_and_xfs_can_hold_swap():
    for fstype in ("ext4", "xfs"):
        swap.check_filesystem("/swapfile", mounts.parse_mountinfo(f"1 0 254:1 / / rw - {fstype} /dev/vda rw\n"))


# ---------------------------------------------------------------- real: systemd test host
# Swap turned on inside the test host is the whole machine's swap: small sizes, and every
# test swaps off in its teardown (the harness also does at shutdown).

@pytest.fixture
def swaphost(vhost):
    yield vhost
    vhost.run_shell("swapoff /swapfile 2>/dev/null; rm -f /swapfile; "
                    "sed -i '\\#^/swapfile .*# bingo-host$#d' /etc/fstab", check=False)


def _state(host):
    swaps = swap_facts.parse_proc_swaps(host.read_file("/proc/swaps"))
    st = host.run(["stat", "-c", "%s %a", "/swapfile"], check=False).stdout.split()
    lines = [l for l in host.read_file("/etc/fstab").splitlines() if l.startswith("/swapfile ")]
    return swaps.get("/swapfile"), st, lines


def test_swap_create_rerun_remove(swaphost):
    """The real file, swapon and fstab line; the resize, repair and refusal decisions are
    tests/steps/swap/'s cases."""
    host = swaphost
    first = run_step(host, "swap", swap=32)
    assert first["error"] is None, first["error"]
    active, st, lines = _state(host)
    assert active is not None and st == [str(32 << 20), "600"]
    assert lines == ["/swapfile none swap sw,nofail 0 0 # bingo-host"]
    again = run_step(host, "swap", swap=32)
    assert again["changes"] == [] and again["reason"] == "32 MiB swap file /swapfile active"
    off = run_step(host, "swap", swap=0)
    assert off["error"] is None
    assert _state(host) == (None, [], [])
    assert run_step(host, "swap", swap=0)["changes"] == []
    print(f"TIMING swap create {first['seconds']:.2f}s, rerun {again['seconds']:.2f}s, "
          f"remove {off['seconds']:.2f}s")
