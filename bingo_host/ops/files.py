"""Atomic, change-only file writes with a diff for --dry-run, and the one safe read.

A file is written to a temporary file in the same directory, given its mode and owner, synced,
then renamed over the target: readers see the old file or the new one, never half of either.

Some managed files sit in directories the app user can write (``shared/bingo.ini``). Root reads
what is there only through :func:`read_regular`: never through a symlink, never a FIFO (it would
block) or a device (``/dev/zero`` never ends), never more than a size cap. Anything else there
is not our file: :func:`plan` says "replace" and the rename puts a regular file in its place.
The write itself never follows a link: the temporary file is created with O_EXCL, its mode
and owner are set through its descriptor, and a rename replaces a link, not its target.
"""

from __future__ import annotations

import difflib
import errno
import grp
import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_READ = 1 << 20  # bytes: every file bingo-host manages or reads back is a few KiB


class NotRegularFile(OSError):
    """The path is a symlink, a FIFO, a device, a directory, or larger than the cap."""


def read_regular(path: str | Path, limit: int = MAX_READ) -> tuple[bytes, os.stat_result] | None:
    """(content, stat) of the regular file at path; None if nothing is there.

    Never follows a symlink at path (O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK, and it
    is refused after fstat), never reads past limit. Raises NotRegularFile for anything that is
    not a regular file of at most limit bytes, OSError for the rest (EACCES...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "a symbolic link, not followed", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        chunks, size = [], 0
        while chunk := os.read(fd, min(65536, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise NotRegularFile(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return b"".join(chunks), st
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileChange:
    path: str
    action: str  # "create", "update", "chmod/chown", "replace" (was no regular file)
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
        old, st = read_regular(path) or (None, None)
    except NotRegularFile as exc:
        return FileChange(str(path), "replace", f"{path} is {exc.strerror}: replaced by a "
                                                "regular file\n")
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
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
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
