"""The swap file: layout.SWAP_FILE of swap.size MiB, in fstab (marked) and active; 0 = none."""

from __future__ import annotations

import os

from ...facts import mounts, paths, systemd
from ...facts import swap as swap_facts
from ...ops import service
from ...ops import fstab
from ... import layout, subp
from ...errors import BingoHostError, CommandError

NAME = "swap"

SWAP_OPTIONS = "sw,nofail"
MIB = 1024 * 1024
#: File systems whose files the kernel cannot swap to (btrfs can, when the file is nocow).
NO_SWAP_FS = ("overlay", "tmpfs", "ramfs", "aufs", "squashfs", "nfs", "nfs4", "cifs", "smb3",
              "9p", "virtiofs", "zfs", "fuse")


def swap_line(path: str = layout.SWAP_FILE) -> str:
    return fstab.format_line(path, "none", "swap", SWAP_OPTIONS, 0, 0)


def check_filesystem(path: str, table: list[mounts.Mount], nocow=swap_facts.nocow) -> None:
    """Raise unless the file system that would hold ``path`` can hold a swap file (``nocow``:
    asked only on btrfs)."""
    m = mounts.mount_containing(os.path.dirname(path) or "/", table)
    fstype = m.fstype if m else "unknown"
    if fstype in NO_SWAP_FS or fstype.startswith("fuse."):
        raise BingoHostError(
            f"cannot put the swap file {path} on {m.mountpoint if m else '?'}: it is {fstype}, "
            f"which cannot hold swap; set swap.size: 0 (or add swap another way)")
    if fstype == "btrfs" and not nocow(os.path.dirname(path) or "/"):
        raise BingoHostError(
            f"{path} would be on btrfs without nocow: btrfs swap files must be nocow "
            f"(chattr +C on an empty directory or subvolume); set swap.size: 0 or fix that")


def _fill(path: str, mib: int, use_dd: bool) -> None:
    if os.path.lexists(path):
        os.unlink(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    if not use_dd:
        try:
            subp.run(["fallocate", "-l", f"{mib}M", path], timeout=300)
            return
        except CommandError:
            pass  # not supported here: write it out
    subp.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync",
              "status=none"], timeout=max(300, mib // 10))


def create_and_enable(path: str, mib: int) -> None:
    """Create the swap file and turn it on; a file swapon refuses (fallocate'd files have
    unwritten extents some file systems will not swap to) is written out with dd instead."""
    for use_dd in (False, True):
        _fill(path, mib, use_dd)
        os.chmod(path, 0o600)
        subp.run(["mkswap", path], timeout=120)
        try:
            subp.run(["swapon", path], timeout=120)
            return
        except CommandError:
            if use_dd:
                raise


def _reload(ctx) -> None:
    """Regenerate systemd's units from the changed fstab (only when systemd is PID 1)."""
    if ctx.fact(systemd.booted):
        ctx.change("reload systemd (fstab changed)", service.daemon_reload)


def converge(ctx) -> str | None:
    path = layout.SWAP_FILE
    want = int(ctx.cfg.swap.size)
    st = ctx.fact(paths.lstat, path)
    # /proc/swaps is the kernel's: where hosts share one (containers), another's swap file can be
    # listed under this name. One that does not exist here is not this host's to turn off.
    active = path in ctx.fact(swap_facts.active) and st is not None

    if want == 0:
        if active:
            ctx.change(f"swapoff {path}", lambda: subp.run(["swapoff", path], timeout=600))
        if st is not None:
            ctx.remove_file(path)
        if fstab.apply(ctx, lambda t: fstab.remove_line(t, path), f"remove the {path} line"):
            _reload(ctx)
        return "no swap file (swap.size is 0)"

    good = (st is not None and st.kind == "file" and st.size == want * MIB
            and ctx.fact(swap_facts.has_signature, path))
    if not good:
        if active:
            ctx.change(f"swapoff {path} (size {st.size >> 20 if st else 0} MiB, want {want} MiB)",
                       lambda: subp.run(["swapoff", path], timeout=600))
        check_filesystem(path, ctx.fact(mounts.read), lambda d: ctx.fact(swap_facts.nocow, d))
        ctx.change(f"create a {want} MiB swap file {path} and swapon it",
                   lambda: create_and_enable(path, want))
        active = True
    elif st.mode & 0o777 != 0o600:
        ctx.change(f"chmod 600 {path}", lambda: os.chmod(path, 0o600))

    if fstab.apply(ctx, lambda t: fstab.set_line(t, swap_line(path)), f"set the {path} swap line"):
        _reload(ctx)
    if not active:
        ctx.change(f"swapon {path}", lambda: subp.run(["swapon", path], timeout=120))
    return f"{want} MiB swap file {path} active"
