"""How big a mounted ext4 or xfs filesystem is (dumpe2fs -h, xfs_info), to compare with its
device when the volume was enlarged."""

from __future__ import annotations

from .. import subp
from . import blockdev


def filesystem_bytes(device: str, fstype: str, mountpoint: str) -> int:
    if fstype == "ext4":
        return blockdev.parse_dumpe2fs(subp.run(["dumpe2fs", "-h", device], timeout=60).stdout)
    return blockdev.parse_xfs_info(subp.run(["xfs_info", mountpoint], timeout=60).stdout)
