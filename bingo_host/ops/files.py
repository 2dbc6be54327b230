"""Atomic, change-only file writes with a diff for --dry-run.

A file is written to a temporary file in the same directory, given its mode and owner, synced,
then renamed over the target: readers see the old file or the new one, never half of either.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileChange:
    path: str
    action: str  # "create", "update", "chmod/chown"
    diff: str

    def describe(self) -> str:
        return f"{self.action} {self.path}"


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    return uid, gid


def plan(path: str | Path, content: str | bytes, mode: int, owner: str | None = None,
         group: str | None = None, secret: bool = False) -> FileChange | None:
    """What writing content to path would change; None when the file is already so."""
    path = Path(path)
    new = content.encode() if isinstance(content, str) else content
    try:
        old = path.read_bytes()
        st = path.stat()
    except FileNotFoundError:
        old, st = None, None
    if old is None:
        action = "create"
    elif old != new:
        action = "update"
    else:
        uid, gid = _ids(owner, group)
        if st.st_mode & 0o7777 == mode and uid in (-1, st.st_uid) and gid in (-1, st.st_gid):
            return None
        action = "chmod/chown"
    if secret:
        diff = "(content not shown: it holds secrets)\n" if action != "chmod/chown" else ""
    else:
        diff = "".join(difflib.unified_diff(
            (old or b"").decode(errors="replace").splitlines(keepends=True),
            new.decode(errors="replace").splitlines(keepends=True),
            fromfile=f"{path} (current)" if old is not None else "/dev/null",
            tofile=f"{path} (wanted)",
        ))
    return FileChange(str(path), action, diff)


def write_atomic(path: str | Path, content: str | bytes, mode: int, owner: str | None = None,
                 group: str | None = None) -> None:
    """Replace path with content; mode and owner are set before the rename."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    uid, gid = _ids(owner, group)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure(path: str | Path, content: str | bytes, mode: int, owner: str | None = None,
           group: str | None = None, secret: bool = False, dry_run: bool = False) -> FileChange | None:
    """Make path hold content with mode and owner; return what changed (None: nothing)."""
    change = plan(path, content, mode, owner, group, secret)
    if change and not dry_run:
        write_atomic(path, content, mode, owner, group)
    return change


def touch_past(path: str, before: float | None) -> None:
    """Touch path so its whole-second mtime moves past `before` (uWSGI compares whole seconds)."""
    wanted = max(int(time.time()), int(before or 0) + 1)
    os.utime(path, (wanted, wanted))


def symlink(path: str, target: str) -> None:
    """Point the symlink path at target atomically (a new link renamed over the old one, the
    directory synced): readers see the old target or the new one, never no link."""
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
