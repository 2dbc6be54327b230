"""The swap step: pure parsers here; real runs in the systemd test host further down."""

from __future__ import annotations

import os

import pytest

from bingo_host import blockdev
from bingo_host.errors import BingoHostError
from bingo_host.steps import swap

PROC_SWAPS = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
              "/swapfile                               file\t\t32764\t\t0\t\t-2\n"
              "/srv/my\\040swap                         file\t\t1020\t\t0\t\t-3\n")


def test_parse_proc_swaps():
    assert swap.parse_proc_swaps(PROC_SWAPS) == {"/swapfile": 32764, "/srv/my swap": 1020}
    assert swap.parse_proc_swaps("Filename Type Size Used Priority\n") == {}


def test_swap_line():
    assert swap.swap_line() == "/swapfile none swap sw,nofail 0 0 # bingo-host"


def test_signature(tmp_path):
    page = os.sysconf("SC_PAGE_SIZE")
    f = tmp_path / "s"
    f.write_bytes(bytes(page - 10) + b"SWAPSPACE2" + bytes(page))
    assert swap.has_swap_signature(str(f))
    f.write_bytes(bytes(2 * page))
    assert not swap.has_swap_signature(str(f))
    assert not swap.has_swap_signature(str(tmp_path / "missing"))


@pytest.mark.parametrize("fstype", ["overlay", "tmpfs", "nfs4", "fuse.sshfs"])
def test_filesystems_that_cannot_hold_swap(fstype):
    table = blockdev.parse_mountinfo(f"1 0 0:5 / / rw - {fstype} none rw\n")
    with pytest.raises(BingoHostError) as e:
        swap.check_filesystem("/swapfile", table)
    assert fstype in str(e.value) and "swap.size: 0" in str(e.value)


def test_ext4_and_xfs_can_hold_swap():
    for fstype in ("ext4", "xfs"):
        swap.check_filesystem("/swapfile", blockdev.parse_mountinfo(f"1 0 254:1 / / rw - {fstype} /dev/vda rw\n"))
