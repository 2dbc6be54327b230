"""Paths on the host: whether they exist, what kind they are, their mode and owner. The steps
read them through ``ctx.fact`` so that a test can answer from a recorded host."""

from __future__ import annotations

import os
import stat as stat_module
import sys
from dataclasses import dataclass

from .. import versions


@dataclass(frozen=True)
class Inode:
    kind: str  # file | dir | link | other
    mode: int  # the permission bits (mode & 0o7777)
    uid: int
    gid: int
    size: int


def exists(path: str) -> bool:
    return os.path.exists(path)


def lexists(path: str) -> bool:
    """True for a dangling symlink too."""
    return os.path.lexists(path)


def isfile(path: str) -> bool:
    return os.path.isfile(path)


def isdir(path: str) -> bool:
    return os.path.isdir(path)


def ismount(path: str) -> bool:
    return os.path.ismount(path)


def lstat(path: str) -> Inode | None:
    """What is at path itself (a link is a link); None when nothing is."""
    try:
        return _inode(os.lstat(path))
    except FileNotFoundError:
        return None


def stat(path: str) -> Inode | None:
    """What path leads to (through links); None when nothing does."""
    try:
        return _inode(os.stat(path))
    except FileNotFoundError:
        return None


def _inode(st: os.stat_result) -> Inode:
    kind = ("link" if stat_module.S_ISLNK(st.st_mode) else "dir" if stat_module.S_ISDIR(st.st_mode)
            else "file" if stat_module.S_ISREG(st.st_mode) else "other")
    return Inode(kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_size)


def entries(path: str) -> int:
    """How many entries the directory at path holds (0: none, or no directory there)."""
    try:
        return len(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return 0


def readlink(path: str) -> str | None:
    """A symlink's target; None when path is no symlink."""
    return os.readlink(path) if os.path.islink(path) else None


def realpath(path: str) -> str:
    return os.path.realpath(path)


def own_command() -> str | None:
    """The bingo-host script of this installation (beside its Python); None when running from a
    source tree (python -m bingo_host)."""
    here = os.path.join(os.path.dirname(sys.executable), "bingo-host")
    return here if os.path.exists(here) else None


def bingo_host_version(command: str) -> str | None:
    """The version of the bingo-host a script (or a link to one) runs; None if unknown."""
    return versions.installed(command)
