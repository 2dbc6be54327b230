"""Which /dev node is the EBS data volume: EC2's device names (sdf, xvdf), NVMe namespaces and
the volume id their controllers report. Parsers are pure, tested from recorded bytes."""

from __future__ import annotations

import ctypes
import fcntl
import glob
import os
import re
import time
from dataclasses import dataclass

from ..errors import BingoHostError

EBS_MODEL = "Amazon Elastic Block Store"
EBS_BY_ID = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol*"


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


# The NVMe identify-controller structure, as amazon-ec2-utils' ebsnvme-id reads it.
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
