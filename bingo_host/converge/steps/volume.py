"""The MariaDB data volume: find it, adopt or (only if blank) format it, fstab, mount, grow.

Safety rule: bingo-host never formats a device that carries any signature (filesystem, LVM,
RAID, partition table, swap, ...). The single exception is a device bingo-host was itself
formatting when it was interrupted: before mkfs it records the device and the UUID it gives
the new filesystem in MKFS_MARKER, so a rerun may format that device again only if it is
blank or carries exactly that UUID (an interrupted mkfs.xfs leaves a valid-looking labelled
xfs superblock behind; an interrupted mkfs.ext4 leaves nothing blkid recognises).
"""

from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass

from ... import state, subp
from ...errors import BingoHostError, CommandError, ConfigError
from ...facts import ebs, mounts, paths, signatures, sizes, systemd
from ...ops import fstab, service

NAME = "volume"

MKFS_MARKER = state.MKFS_FILE
MOUNT_OPTIONS = "defaults,nofail,noatime"
FILESYSTEMS = ("ext4", "xfs")
LEGACY_VG, LEGACY_LV = "vg0", "mysql"  # the old CloudFormation template's LVM layout


# -- decision (pure) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    action: str  # adopt | format | lvm | refuse
    fstype: str | None = None
    uuid: str | None = None
    lv_path: str | None = None
    reason: str = ""


def describe_probe(found: dict[str, str]) -> str:
    if not found:
        return "nothing"
    if "AMBIVALENT" in found:
        return "several competing signatures (blkid -p: ambivalent result)"
    keys = ("TYPE", "LABEL", "UUID", "PTTYPE", "PTUUID", "USAGE")
    return " ".join(f"{k}={found[k]}" for k in keys if k in found) or "an unknown signature"


def decide(device: str, found: dict[str, str], lvs: list[signatures.LogicalVolume],
           fstype: str, label: str, marker: dict | None = None) -> Decision:
    """What to do with ``device`` given its low-level probe (``blkid -p -o export``, parsed;
    {} = nothing found) and the LVM logical volumes. Pure: the tests drive it from recordings.
    """
    kind = found.get("TYPE")
    if marker and marker.get("device") == device and (
            not found or (kind == marker.get("fstype") and found.get("UUID") == marker.get("uuid")
                          and "PTTYPE" not in found)):
        return Decision("format", fstype, reason=f"bingo-host's own mkfs of {device} was "
                                                 "interrupted; formatting it again")
    if not found:
        return Decision("format", fstype, reason=f"{device} is blank")
    if "PTTYPE" not in found and "AMBIVALENT" not in found:
        if kind in FILESYSTEMS and found.get("LABEL") == label:
            return Decision("adopt", kind, found.get("UUID"),
                            reason=f"{kind} labelled {label} found on {device}")
        if kind == "LVM2_member":
            legacy = next((lv for lv in lvs if (lv.vg, lv.lv) == (LEGACY_VG, LEGACY_LV)), None)
            if legacy:
                return Decision("lvm", lv_path=legacy.path or f"/dev/{LEGACY_VG}/{LEGACY_LV}",
                                reason=f"legacy LVM volume {LEGACY_VG}/{LEGACY_LV} on {device}")
    what = describe_probe(found)
    if kind == "LVM2_member":
        what += f" (an LVM physical volume without the legacy {LEGACY_VG}/{LEGACY_LV} volume)"
    hint = (f"; if it holds the database's data, set volume.label to {found['LABEL']!r}"
            if kind in FILESYSTEMS and found.get("LABEL") and "PTTYPE" not in found else "")
    if kind in FILESYSTEMS and not found.get("LABEL"):
        hint = (f"; if it holds the database's data, label it (e2label/xfs_admin -L) "
                f"{label!r}")
    return Decision("refuse", reason=(
        f"volume {device} is not blank: found {what}. bingo-host refuses to format a device "
        f"that carries any signature. If the volume is really unused, wipe it yourself "
        f"(wipefs -a {device}) and rerun{hint}"))


# -- marker --------------------------------------------------------------------------------

def _clear_marker() -> None:
    try:
        os.unlink(MKFS_MARKER)
    except FileNotFoundError:
        pass


def mkfs(device: str, fstype: str, label: str, fs_uuid: str, force: bool = False) -> None:
    """Format device, recording the attempt first so an interrupted run can finish it."""
    state.write_json(MKFS_MARKER, {"device": device, "fstype": fstype, "label": label, "uuid": fs_uuid},
                     mode=0o600)
    if fstype == "ext4":
        argv = ["mkfs.ext4", "-q", "-L", label, "-U", fs_uuid] + (["-F"] if force else [])
    else:
        argv = ["mkfs.xfs", "-q", "-L", label, "-m", f"uuid={fs_uuid}"] + (["-f"] if force else [])
    subp.run(argv + [device], timeout=3600)
    got = signatures.read_signature(device)
    if got.get("TYPE") != fstype or got.get("UUID") != fs_uuid:
        raise BingoHostError(f"mkfs of {device} finished but blkid finds {describe_probe(got)}")
    os.sync()
    _clear_marker()


# -- converge ------------------------------------------------------------------------------

def converge(ctx) -> str | None:
    cfg = ctx.cfg
    if not cfg.database.local:
        return "external database: no data volume"
    vol = cfg.volume
    mp = vol.mountpoint
    if vol.attach_as:
        _attach(ctx, vol.attach_as)
    device = ctx.fact(ebs.wait_for_device, vol.device)  # waits up to a minute
    unsafe = ctx.fact(mounts.unsafe_reason, device, mp)  # before any probe, mkfs or mount
    if unsafe:
        raise ConfigError("volume.device", f"{unsafe}; refusing to use it as the data volume "
                                           "(nothing was changed)")
    found = ctx.fact(signatures.read_signature, device)
    lvs = ctx.fact(signatures.lvs) if found.get("TYPE") == "LVM2_member" else []
    marker = ctx.fact(state.read_json, MKFS_MARKER)
    d = decide(device, found, lvs, vol.filesystem, vol.label, marker)
    if d.action == "refuse":
        raise BingoHostError(d.reason)

    planned = False  # in a dry run, the filesystem does not exist yet
    fs_dev = device
    if d.action == "format":
        fstype, fs_uuid = vol.filesystem, str(uuidlib.uuid4())
        force = bool(found)  # only ever our own interrupted mkfs (see decide)
        ctx.change(f"create {fstype} labelled {vol.label} on {device} ({d.reason})",
                   lambda: mkfs(device, fstype, vol.label, fs_uuid, force))
        planned = ctx.dry_run
    elif d.action == "lvm":
        fs_dev = d.lv_path
        lv_there = ctx.fact(paths.exists, fs_dev)
        if not lv_there:
            ctx.change(f"activate LVM volume group {LEGACY_VG} ({d.reason})",
                       lambda: subp.run(["vgchange", "-ay", LEGACY_VG], timeout=120))
        if ctx.dry_run and not lv_there:
            planned, fstype, fs_uuid = True, "?", "?"
        else:
            lv_found = ctx.fact(signatures.read_signature, fs_dev)
            fstype, fs_uuid = lv_found.get("TYPE"), lv_found.get("UUID")
            if fstype not in FILESYSTEMS or not fs_uuid:
                raise BingoHostError(
                    f"legacy LVM volume {fs_dev} on {device} holds {describe_probe(lv_found)}, "
                    f"not an ext4 or xfs filesystem; bingo-host will not touch it")
            fs_dev = ctx.fact(paths.realpath, fs_dev)
    else:
        fstype, fs_uuid = d.fstype, d.uuid
    if d.action != "format" and marker:  # stale: that mkfs finished or the device is another
        ctx.change(f"remove the stale {MKFS_MARKER}", _clear_marker)

    spec_uuid = "<new UUID>" if planned else fs_uuid
    line = fstab.format_line(f"UUID={spec_uuid}", mp, fstype, MOUNT_OPTIONS, 0, 2)
    if fstab.apply(ctx, lambda text: fstab.set_line(text, line),
                   f"mount UUID={spec_uuid} ({fstype}) at {mp}") and ctx.fact(systemd.booted):
        ctx.change("reload systemd (fstab changed)",
                   service.daemon_reload)

    current = ctx.fact(mounts.mounted_at, mp)
    if current is not None and (planned or current.major_minor != ctx.fact(mounts.dev_numbers, fs_dev)):
        raise BingoHostError(
            f"{mp} already has {current.source} ({current.fstype}) mounted on it, not the data "
            f"volume {fs_dev}; unmount it (and remove it from /etc/fstab) and rerun")
    if current is None:
        # Mounting hides what is in the directory (e.g. the datadir Debian's mariadb-server
        # package initialised in the packages step) without touching it: say so, go on.
        hidden = ctx.fact(paths.entries, mp)
        note = f" (hides {hidden} existing entries of the root filesystem's {mp})" if hidden else ""
        ctx.change(f"mount {mp}{note}", lambda: _mount(mp, fs_dev))
    mounted = current is not None or not ctx.dry_run
    if mounted:
        _grow(ctx, fs_dev, fstype, mp)
    return f"{fstype} {vol.label} (UUID {fs_uuid}) on {fs_dev} mounted at {mp}"


def _attach(ctx, device: str) -> None:
    """The stack's data volume attached to this instance (ebs_attach.py), before it is looked for."""
    from ... import ebs_attach  # here: it loads boto3, ~130 ms a converged bootstrap never pays
    ident = ctx.fact(ebs_attach.identity)
    found = ctx.fact(ebs_attach.locate, ident)
    if found.state == "here":
        return
    wait = f", once {found.holder or 'EC2'} lets go of it" if found.state == "elsewhere" else ""
    ctx.change(f"attach {found.volume_id} ({ebs_attach.STACK_TAG}={found.stack}, in "
               f"{ident.availability_zone}) as {device}{wait}",
               lambda: ebs_attach.attach(ident, device))


def _mount(mp: str, fs_dev: str) -> None:
    os.makedirs(mp, mode=0o755, exist_ok=True)
    # Not 'systemctl start <unit>.mount': without udev (containers, the test host) systemd
    # never sees the .device unit and that job would wait for it forever. mount(8) uses fstab.
    subp.run(["mount", mp], timeout=120)
    m = mounts.mounted_at(mp)
    if m is None or m.major_minor != mounts.dev_numbers(fs_dev):
        raise BingoHostError(f"mount {mp} succeeded but {fs_dev} is not mounted there")


def _grow(ctx, fs_dev: str, fstype: str, mp: str) -> None:
    dev_bytes = ctx.fact(sizes.size_bytes, fs_dev)
    fs_bytes = ctx.fact(sizes.filesystem_bytes, fs_dev, fstype, mp)
    grow = ["resize2fs", fs_dev] if fstype == "ext4" else ["xfs_growfs", mp]
    if not sizes.needs_grow(dev_bytes, fs_bytes):
        return
    what = f"grow {fstype} on {fs_dev} from {fs_bytes >> 20} MiB to {dev_bytes >> 20} MiB"

    def do_grow():
        try:
            subp.run(grow, timeout=3600)
        except CommandError as exc:  # e.g. online ext4 resize without CAP_SYS_RESOURCE
            raise BingoHostError(f"could not {what} (online, mounted at {mp}): {exc}; the "
                                 f"filesystem is unchanged and still mounted") from exc

    ctx.change(what, do_grow)
