"""Sizes of a block device and of the filesystem on it: whether the filesystem should grow."""

from __future__ import annotations

import os
import re

from .. import subp
from ..errors import BingoHostError


def size_bytes(device: str, sys_block: str = "/sys/class/block") -> int:
    """The device's size from sysfs (in 512-byte sectors whatever its block size, as
    `blockdev --getsize64` reads it, without a process for each converge run)."""
    path = os.path.join(sys_block, os.path.basename(os.path.realpath(device)), "size")
    try:
        with open(path) as f:
            return int(f.read()) * 512
    except (OSError, ValueError) as exc:
        raise BingoHostError(f"{device}: cannot read its size from {path} ({exc})") from None


def parse_dumpe2fs(text: str) -> int:
    """Filesystem size in bytes from ``dumpe2fs -h``."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError):
        raise BingoHostError("cannot read the ext4 size from dumpe2fs -h output") from None


def parse_xfs_info(text: str) -> int:
    """Data section size in bytes from ``xfs_info`` ('data = bsize=4096 blocks=N ...')."""
    m = re.search(r"^data\s*=\s*bsize=(\d+)\s+blocks=(\d+)", text, re.MULTILINE)
    if not m:
        raise BingoHostError("cannot read the xfs size from xfs_info output")
    return int(m.group(1)) * int(m.group(2))


def needs_grow(device_bytes: int, fs_bytes: int, slack: float = 0.01) -> bool:
    """True when the device is bigger than the filesystem by more than ``slack`` (1%) of it:
    mkfs rounds to whole blocks/allocation groups, so small differences are normal."""
    return device_bytes - fs_bytes > slack * device_bytes


def filesystem_bytes(device: str, fstype: str, mountpoint: str) -> int:
    """How big the mounted ext4 or xfs filesystem is, to compare with its (perhaps enlarged) device."""
    if fstype == "ext4":
        return parse_dumpe2fs(subp.run(["dumpe2fs", "-h", device], timeout=60).stdout)
    return parse_xfs_info(subp.run(["xfs_info", mountpoint], timeout=60).stdout)
