"""/etc/fstab: bingo-host owns only the lines it marked, and keeps every other byte.

A marked line ends with ``# bingo-host`` (layout.FSTAB_MARK). The pure functions here work on
the file's text: ``parse`` it, ``set_line`` (add or replace the marked line for a mount point,
or for a swap file by its path) and ``remove_line``. Unmarked lines, comments, blank lines and
the file's trailing-newline state are preserved byte for byte. ``apply`` writes the result
atomically through ``ctx.change``, and only when the text changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from . import files
from .. import layout
from ..errors import BingoHostError
from ..facts.mounts import unescape_octal

FSTAB = "/etc/fstab"


@dataclass(frozen=True)
class Entry:
    lineno: int  # 0-based index into the file's lines
    raw: str  # the line without its newline
    spec: str
    file: str  # mount point ("none" for swap)
    vfstype: str
    options: str
    marked: bool

    @property
    def key(self) -> str:
        """What a line claims: the mount point, or for swap the swap file/device."""
        return self.spec if self.vfstype == "swap" else self.file


def parse(text: str) -> list[Entry]:
    """The mount entries of an fstab (comments and blank lines are not entries)."""
    entries = []
    for i, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        marked = stripped.endswith(layout.FSTAB_MARK)
        fields = []
        for token in stripped.split():
            if token.startswith("#"):
                break  # a trailing comment (getmntent ignores fields past the sixth)
            fields.append(token)
        if len(fields) < 2:
            continue
        fields += ["auto", "defaults"][len(fields) - 2:]
        entries.append(Entry(i, line, unescape_octal(fields[0]), unescape_octal(fields[1]),
                             fields[2], fields[3], marked))
    return entries


def format_line(spec: str, file: str, vfstype: str, options: str, dump: int = 0,
                passno: int = 0) -> str:
    return f"{spec} {file} {vfstype} {options} {dump} {passno} {layout.FSTAB_MARK}"


def _key_of(line: str) -> str:
    e = parse(line)[0]
    return e.key


def set_line(text: str, line: str) -> str:
    """text with the marked ``line`` in place of bingo-host's line(s) for the same mount point
    (swap: same file). Refuses when an unmarked line already claims that mount point."""
    key = _key_of(line)
    entries = [e for e in parse(text) if e.key == key]
    foreign = [e for e in entries if not e.marked]
    if foreign:
        raise BingoHostError(
            f"{FSTAB} line {foreign[0].lineno + 1} ({foreign[0].raw.strip()!r}) already claims "
            f"{key} and is not bingo-host's (it does not end with {layout.FSTAB_MARK!r}); remove "
            f"or comment it out, or choose another mount point")
    ours = {e.lineno for e in entries}
    lines = text.splitlines(keepends=True)
    out, placed = [], False
    for i, raw in enumerate(lines):
        if i in ours:
            if not placed:
                out.append(line + "\n")
                placed = True
            continue
        out.append(raw)
    if not placed:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(line + "\n")
    return "".join(out)


def remove_line(text: str, key: str) -> str:
    """text without bingo-host's marked line(s) for mount point (or swap file) ``key``."""
    drop = {e.lineno for e in parse(text) if e.marked and e.key == key}
    return "".join(raw for i, raw in enumerate(text.splitlines(keepends=True)) if i not in drop)


def marked_line(text: str, key: str) -> Entry | None:
    return next((e for e in parse(text) if e.marked and e.key == key), None)


def read(path: str | None = None) -> str:
    try:
        with open(path or FSTAB) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def apply(ctx, transform: Callable[[str], str], description: str,
          path: str | None = None) -> bool:
    """Apply a text transform to fstab; write it (atomically, via ctx.change) only if the text
    changes. Returns True when it changed (or would, in a dry run)."""
    path = path or FSTAB
    old = ctx.fact(read, path)
    new = transform(old)
    if new == old:
        return False

    def write():
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
        files.write_atomic(path, new, mode)

    ctx.change(f"{description} in {path}", write)
    return True
