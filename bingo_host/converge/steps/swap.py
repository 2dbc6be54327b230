"""The swap file: layout.SWAP_FILE of swap.size MiB, in fstab (marked) and active; 0 = none."""

from __future__ import annotations

import os

from ...facts import mounts

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


def parse_proc_swaps(text: str) -> dict[str, int]:
    """/proc/swaps -> {path: size in KiB} (paths unescaped: '\\040' is a space)."""
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            out[mounts.unescape_octal(cols[0])] = int(cols[2])
    return out


def has_swap_signature(path: str) -> bool:
    """mkswap's 'SWAPSPACE2' magic at the end of the first page."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open(path, "rb") as f:
            f.seek(page - 10)
            return f.read(10) == b"SWAPSPACE2"
    except OSError:
        return False


def check_filesystem(path: str, table: list[mounts.Mount]) -> None:
    """Raise unless the file system that would hold ``path`` can hold a swap file."""
    m = mounts.mount_containing(os.path.dirname(path) or "/", table)
    fstype = m.fstype if m else "unknown"
    if fstype in NO_SWAP_FS or fstype.startswith("fuse."):
        raise BingoHostError(
            f"cannot put the swap file {path} on {m.mountpoint if m else '?'}: it is {fstype}, "
            f"which cannot hold swap; set swap.size: 0 (or add swap another way)")
    if fstype == "btrfs":
        attrs = subp.run(["lsattr", "-d", os.path.dirname(path) or "/"], timeout=30).stdout.split()
        if not attrs or "C" not in attrs[0]:
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
    if os.path.isdir("/run/systemd/system"):
        ctx.change("reload systemd (fstab changed)",
                   service.daemon_reload)


def converge(ctx) -> str | None:
    path = layout.SWAP_FILE
    want = int(ctx.cfg.swap.size)
    with open("/proc/swaps") as f:
        active = path in parse_proc_swaps(f.read())
    exists = os.path.lexists(path)

    if want == 0:
        if active:
            ctx.change(f"swapoff {path}", lambda: subp.run(["swapoff", path], timeout=600))
        if exists:
            ctx.remove_file(path)
        if fstab.apply(ctx, lambda t: fstab.remove_line(t, path), f"remove the {path} line"):
            _reload(ctx)
        return "no swap file (swap.size is 0)"

    try:
        st = os.lstat(path) if exists else None
    except FileNotFoundError:
        st = None
    good = (st is not None and os.path.isfile(path) and not os.path.islink(path)
            and st.st_size == want * MIB and has_swap_signature(path))
    if not good:
        if active:
            ctx.change(f"swapoff {path} (size {st.st_size >> 20 if st else 0} MiB, want {want} MiB)",
                       lambda: subp.run(["swapoff", path], timeout=600))
        check_filesystem(path, mounts.read())
        ctx.change(f"create a {want} MiB swap file {path} and swapon it",
                   lambda: create_and_enable(path, want))
        active = True
    elif st.st_mode & 0o777 != 0o600:
        ctx.change(f"chmod 600 {path}", lambda: os.chmod(path, 0o600))

    if fstab.apply(ctx, lambda t: fstab.set_line(t, swap_line(path)), f"set the {path} swap line"):
        _reload(ctx)
    if not active:
        ctx.change(f"swapon {path}", lambda: subp.run(["swapon", path], timeout=120))
    return f"{want} MiB swap file {path} active"
