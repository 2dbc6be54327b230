"""Swap: the active swap areas (/proc/swaps), whether a file carries mkswap's signature, whether
a btrfs directory is nocow (swap files there must be)."""

from __future__ import annotations

import os

from .. import subp
from . import mounts


def parse_proc_swaps(text: str) -> dict[str, int]:
    """/proc/swaps -> {path: size in KiB} (paths unescaped: '\\040' is a space)."""
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            out[mounts.unescape_octal(cols[0])] = int(cols[2])
    return out


def active() -> dict[str, int]:
    with open("/proc/swaps") as f:
        return parse_proc_swaps(f.read())


def has_signature(path: str) -> bool:
    """mkswap's 'SWAPSPACE2' magic at the end of the first page."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open(path, "rb") as f:
            f.seek(page - 10)
            return f.read(10) == b"SWAPSPACE2"
    except OSError:
        return False


def nocow(directory: str) -> bool:
    """btrfs's nocow attribute ('C' in lsattr) on directory."""
    attrs = subp.run(["lsattr", "-d", directory], timeout=30).stdout.split()
    return bool(attrs) and "C" in attrs[0]
