"""Block devices: finding the EBS data volume, probing it, and reading mounts.

Parsers (``parse_*``) are pure functions over command output or kernel structures, so they are
unit-tested from recorded output; the few functions that touch the host are thin wrappers.
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import os
import re
import stat
import time
from dataclasses import dataclass

from .. import subp
from ..errors import BingoHostError

EBS_MODEL = "Amazon Elastic Block Store"
EBS_BY_ID = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol*"


# -- device names ---------------------------------------------------------------------------

def ebs_name(name: str) -> str:
    """Canonical form of an EC2 block device mapping name: '/dev/xvdf', 'sdf' -> 'sdf'."""
    name = name.strip().removeprefix("/dev/")
    return "sd" + name[3:] if name.startswith("xvd") else name


def aliases(device: str) -> list[str]:
    """The configured device and its sdX <-> xvdX alias (Xen instances name it either way)."""
    out = [device]
    m = re.fullmatch(r"/dev/(sd|xvd)([a-z]+\d*)", device)
    if m:
        out.append(f"/dev/{'xvd' if m.group(1) == 'sd' else 'sd'}{m.group(2)}")
    return out


# -- NVMe identify controller (what amazon-ec2-utils' ebsnvme-id reads) -----------------------

NVME_IOCTL_ADMIN_CMD = 0xC0484E41  # _IOWR('N', 0x41, struct nvme_admin_cmd), 72 bytes
NVME_ADMIN_IDENTIFY = 0x06
AMZN_VENDOR_ID = 0x1D0F


@dataclass(frozen=True)
class EbsIdentity:
    volume_id: str  # vol-0123...
    bdev: str  # the block device mapping name given at attach time, canonical ('sdf')


def parse_nvme_identify(buf: bytes) -> EbsIdentity | None:
    """Parse a 4096-byte NVMe identify-controller structure; None unless it is an EBS volume.

    Offsets (NVMe spec): vid u16 @0, sn char[20] @4, mn char[40] @24; the vendor-specific
    area starts @3072 and on EBS holds the attach-time device name ('sdf' or '/dev/sdf') in
    its first 32 bytes, padded with spaces or NULs.
    """
    if len(buf) < 4096:
        raise ValueError(f"identify buffer is {len(buf)} bytes, expected 4096")
    vid = int.from_bytes(buf[0:2], "little")
    model = buf[24:64].decode("ascii", "replace").strip(" \0")
    if vid != AMZN_VENDOR_ID or model != EBS_MODEL:
        return None
    serial = ebs_volume_id(buf[4:24].decode("ascii", "replace").strip(" \0"))
    bdev = buf[3072:3104].decode("ascii", "replace").strip(" \0")
    return EbsIdentity(serial, ebs_name(bdev)) if bdev else None


def ebs_volume_id(serial: str) -> str:
    """An EBS NVMe controller's serial is the volume id without its dash: 'vol012' -> 'vol-012'."""
    if serial.startswith("vol") and not serial.startswith("vol-"):
        return "vol-" + serial[3:]
    return serial


def nvme_volume_id(device: str) -> str | None:
    """The EBS volume id of an NVMe namespace (or a link to one), from sysfs; None if not EBS."""
    try:
        name = os.path.basename(os.path.realpath(device))
        with open(f"/sys/block/{name}/device/serial") as f:
            serial = ebs_volume_id(f.read().strip())
    except OSError:
        return None
    return serial if serial.startswith("vol-") else None


def ebs_by_id(volume_id: str) -> str:
    """udev's link for an attached EBS volume on Nitro: model and serial (the id without its
    dash), e.g. /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0."""
    return "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + volume_id.replace("-", "")


def volume_device(volume_id: str) -> str | None:
    """The /dev node of the EBS volume ``volume_id`` attached here, known by its id (never by
    the name it was attached as, which a replaced volume shares): udev's by-id link, else the
    NVMe namespace whose serial is the id (Nitro without udev); None when neither exists (not
    attached yet, or a Xen instance, where volumes carry no id)."""
    link = ebs_by_id(volume_id)
    if os.path.exists(link):
        return os.path.realpath(link)
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return None
    return next((f"/dev/{n}" for n in names
                 if n.startswith("nvme") and nvme_volume_id(f"/dev/{n}") == volume_id), None)


def attachment_devices(device: str, volume_id: str) -> list[str]:
    """The /dev nodes that may be the EBS volume attached as `device`: its sdX and xvdX names
    (Xen) and the NVMe namespaces whose serial is `volume_id` (Nitro)."""
    found = aliases("/dev/" + ebs_name(device))
    try:
        found += [f"/dev/{name}" for name in sorted(os.listdir("/sys/block"))
                  if name.startswith("nvme") and nvme_volume_id(f"/dev/{name}") == volume_id]
    except OSError:
        pass
    return found


def nvme_identify(device: str) -> bytes:
    """The identify-controller structure of an NVMe device (admin ioctl; needs root)."""
    buf = ctypes.create_string_buffer(4096)
    cmd = bytearray(72)
    cmd[0] = NVME_ADMIN_IDENTIFY
    cmd[24:32] = ctypes.addressof(buf).to_bytes(8, "little")  # addr
    cmd[36:40] = (4096).to_bytes(4, "little")  # data_len
    cmd[40:44] = (1).to_bytes(4, "little")  # cdw10: CNS 1 = identify controller
    fd = os.open(device, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, NVME_IOCTL_ADMIN_CMD, bytes(cmd))
    finally:
        os.close(fd)
    return buf.raw


def ebs_nvme_devices(sys_root: str = "/sys") -> list[str]:
    """/dev paths of NVMe namespaces whose controller model is the EBS one; udev's by-id
    links first (when udev made them), then /sys/block (no udev needed)."""
    found = [os.path.realpath(p) for p in sorted(glob.glob(EBS_BY_ID)) if "-part" not in p]
    for model in sorted(glob.glob(f"{sys_root}/block/nvme*n1/device/model")):
        try:
            with open(model) as f:
                if f.read().strip() != EBS_MODEL:
                    continue
        except OSError:
            continue
        found.append("/dev/" + model.split("/")[-3])
    return list(dict.fromkeys(found))


def find_device(configured: str, identify=nvme_identify, nvme_devices=ebs_nvme_devices) -> str | None:
    """The block device for ``volume.device``, resolved to its /dev node, or None (yet).

    The configured path or its sdX/xvdX alias if present (a udev/ec2-utils link counts);
    otherwise on Nitro, the EBS NVMe namespace whose controller reports that device name.
    """
    for path in aliases(configured):
        if os.path.exists(path):
            return os.path.realpath(path)
    if configured.startswith("/dev/disk/"):
        return None
    want = ebs_name(configured)
    for dev in nvme_devices():
        try:
            ident = parse_nvme_identify(identify(dev))
        except (OSError, ValueError):
            continue
        if ident and ident.bdev == want:
            return dev
    return None


def wait_for_device(configured: str, timeout: float = 60, interval: float = 1.0,
                    find=find_device) -> str:
    deadline = time.monotonic() + timeout
    while True:
        dev = find(configured)
        if dev:
            return dev
        if time.monotonic() >= deadline:
            looked = " or ".join(aliases(configured))
            raise BingoHostError(
                f"volume.device {configured}: no such block device after {timeout:g} s (looked "
                f"for {looked}, and for an EBS NVMe volume attached as {ebs_name(configured)}); "
                f"attach the data volume to this instance as {configured}, or set volume.device")
        time.sleep(interval)


# -- blkid / lvs --------------------------------------------------------------------------

def _unquote_export(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_blkid_export(text: str) -> dict[str, str]:
    """``blkid -p -o export`` output (KEY=value lines; spaces escaped with '\\')."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            out[key] = _unquote_export(value)
    return out


BLKID_NOTHING = 2
BLKID_AMBIVALENT = 8


def probe(device: str) -> dict[str, str]:
    """Low-level probe (reads the device itself, not the blkid cache or udev).
    {} when nothing is found; {'AMBIVALENT': '1'} when several signatures compete."""
    r = subp.run(["blkid", "-p", "-o", "export", device],
                 rcs=(0, BLKID_NOTHING, BLKID_AMBIVALENT), timeout=60)
    if r.returncode == BLKID_AMBIVALENT:
        return {"AMBIVALENT": "1"}
    if r.returncode == BLKID_NOTHING:
        return {}
    found = parse_blkid_export(r.stdout)
    found.pop("DEVNAME", None)
    return found


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    lv: str
    path: str


def parse_lvs(text: str) -> list[LogicalVolume]:
    """``lvs --noheadings --separator '|' -o vg_name,lv_name,lv_path`` output."""
    rows = ([p.strip() for p in line.split("|")] for line in text.splitlines())
    return [LogicalVolume(*row) for row in rows if len(row) == 3 and row[0] and row[1]]


def lvs() -> list[LogicalVolume]:
    r = subp.run(["lvs", "--noheadings", "--separator", "|", "-o", "vg_name,lv_name,lv_path"],
                 timeout=60)
    return parse_lvs(r.stdout)


# -- mounts -------------------------------------------------------------------------------

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
        out.append(Mount(a[2], _unescape_octal(a[3]), _unescape_octal(a[4]), b[0],
                         _unescape_octal(b[1])))
    return out


def _unescape_octal(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts(path: str = "/proc/self/mountinfo") -> list[Mount]:
    with open(path) as f:
        return parse_mountinfo(f.read())


def mounted_at(mountpoint: str, table: list[Mount] | None = None) -> Mount | None:
    """The (topmost) mount at mountpoint, if any."""
    hits = [m for m in (mounts() if table is None else table) if m.mountpoint == mountpoint]
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
    for path in attachment_devices(device, volume_id):
        try:
            rdev = os.stat(path).st_rdev
        except OSError:
            continue
        disks.add((os.major(rdev), os.minor(rdev)))
    if not disks:
        return ""
    try:
        for mount in mounts():
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
                volume_id = ebs_volume_id(f.read().strip())
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
    for m in mounts() if table is None else table:
        if m.mountpoint != mountpoint and _mount_numbers(m) & ours:
            what = "the root filesystem" if m.mountpoint == "/" else f"{m.source} ({m.fstype})"
            return f"{device} is in use: {what} is mounted from it at {m.mountpoint}"
    return None


def dev_numbers(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


# -- sizes --------------------------------------------------------------------------------

def size_bytes(device: str) -> int:
    return int(subp.run(["blockdev", "--getsize64", device], timeout=30).stdout.strip())


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
