"""What is mounted where (/proc/self/mountinfo), and whether a device is in use: it, a partition
of it or something built on it mounted anywhere."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from . import ebs


@dataclass(frozen=True)
class Mount:
    major_minor: str  # '7:3'
    root: str
    mountpoint: str
    fstype: str
    source: str


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo (fields before ' - ' then fstype and source)."""
    out = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        a, b = pre.split(), post.split()
        if len(a) < 5 or len(b) < 2:
            continue
        out.append(Mount(a[2], unescape_octal(a[3]), unescape_octal(a[4]), b[0],
                         unescape_octal(b[1])))
    return out


def unescape_octal(s: str) -> str:
    """A path as the kernel writes it in mountinfo, /proc/swaps and fstab: '\\040' is a space."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def read(path: str = "/proc/self/mountinfo") -> list[Mount]:
    with open(path) as f:
        return parse_mountinfo(f.read())


def mounted_at(mountpoint: str, table: list[Mount] | None = None) -> Mount | None:
    """The (topmost) mount at mountpoint, if any."""
    hits = [m for m in (read() if table is None else table) if m.mountpoint == mountpoint]
    return hits[-1] if hits else None


def mount_containing(path: str, table: list[Mount]) -> Mount | None:
    """The mount a path lives on: the longest mount point that prefixes it (last wins)."""
    best = None
    for m in table:
        mp = m.mountpoint.rstrip("/") + "/"
        if (path.rstrip("/") + "/").startswith(mp) and (
                best is None or len(m.mountpoint) >= len(best.mountpoint)):
            best = m
    return best


def attachment_mountpoint(device: str, volume_id: str) -> str:
    """Best effort: where the EBS volume attached as `device`, or one of its first partitions
    (their minor numbers follow the disk's), is mounted here; '' when nowhere."""
    disks = set()
    for path in ebs.attachment_devices(device, volume_id):
        try:
            rdev = os.stat(path).st_rdev
        except OSError:
            continue
        disks.add((os.major(rdev), os.minor(rdev)))
    if not disks:
        return ""
    try:
        for mount in read():
            major, minor = (int(x) for x in mount.major_minor.split(":"))
            if any(major == ma and mi <= minor <= mi + 15 for ma, mi in disks):
                return mount.mountpoint
    except (OSError, ValueError):
        pass
    return ""


def mounted_volume_id(mountpoint: str, table: list[Mount] | None = None,
                      sys_root: str = "/sys") -> str | None:
    """The EBS volume id of the disk mounted at `mountpoint` (or of the disk whose partition is),
    from its NVMe controller's serial: on Nitro, what really holds the data, whatever name it
    was attached as. None where the host cannot tell (Xen sdX/xvdX, loop, LVM, nothing there)."""
    mount = mounted_at(mountpoint, table)
    if mount is None:
        return None
    for numbers in sorted(_mount_numbers(mount)):
        disk = os.path.realpath(f"{sys_root}/dev/block/{numbers}")
        if os.path.isfile(f"{disk}/partition"):
            disk = os.path.dirname(disk)
        try:
            with open(f"{disk}/device/serial") as f:
                volume_id = ebs.ebs_volume_id(f.read().strip())
        except OSError:
            continue
        if volume_id.startswith("vol-"):
            return volume_id
    return None


def stacked_devices(device: str, sys_root: str = "/sys") -> set[str]:
    """'major:minor' of ``device``, its partitions and everything built on them (LVM volumes,
    RAID arrays, dm-crypt), from sysfs: whatever of these is mounted is in use."""
    found, todo, seen = set(), [os.path.basename(os.path.realpath(device))], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = f"{sys_root}/class/block/{name}"
        try:
            with open(f"{base}/dev") as f:
                found.add(f.read().strip())
            entries = os.listdir(base)
        except OSError:
            continue
        todo += [e for e in entries if os.path.isfile(f"{base}/{e}/partition")]
        if os.path.isdir(f"{base}/holders"):
            todo += os.listdir(f"{base}/holders")
    return found


def _mount_numbers(m: Mount) -> set[str]:
    """What a mount sits on: its st_dev, and its source device's numbers (btrfs and overlay
    report an anonymous st_dev, their source names the disk)."""
    numbers = {m.major_minor}
    if m.source.startswith("/dev/"):
        try:
            st = os.stat(m.source)
        except OSError:
            return numbers
        if stat.S_ISBLK(st.st_mode):
            numbers.add(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    return numbers


def unsafe_reason(device: str, mountpoint: str, table: list[Mount] | None = None) -> str | None:
    """Why ``device`` must not become the data volume mounted at ``mountpoint`` (None: it may):
    it is not a block device, or it, a partition of it or something built on it is mounted
    anywhere else (the root disk is mounted at /)."""
    try:
        st = os.stat(device)
    except OSError as exc:
        return f"{device} cannot be read: {exc.strerror}"
    if not stat.S_ISBLK(st.st_mode):
        kind = "a character device" if stat.S_ISCHR(st.st_mode) else \
            "a directory" if stat.S_ISDIR(st.st_mode) else "a regular file or other non-device"
        return f"{device} is not a block device (it is {kind})"
    ours = stacked_devices(device)
    for m in read() if table is None else table:
        if m.mountpoint != mountpoint and _mount_numbers(m) & ours:
            what = "the root filesystem" if m.mountpoint == "/" else f"{m.source} ({m.fstype})"
            return f"{device} is in use: {what} is mounted from it at {m.mountpoint}"
    return None


def dev_numbers(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
