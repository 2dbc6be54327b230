"""Atomic, change-only file writes with a diff for --dry-run.

A file is written to a temporary file in the same directory, given its mode and owner, synced,
then renamed over the target: readers see the old file or the new one, never half of either.

Some managed files sit in directories the app user can write (``shared/bingo.ini``). Root reads
what is there only through regular_file.read_regular: never through a symlink, never a FIFO (it
would block) or a device (``/dev/zero`` never ends), never more than a size cap. Anything else
there is not our file: :func:`plan` says "replace" and the rename puts a regular file in its place.
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
import time
from dataclasses import dataclass
from pathlib import Path

from ..regular_file import NotRegularFile, read_regular

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
         group: str | None = None, secret: bool = False, *,
         dir_fd: int | None = None) -> FileChange | None:
    """What writing content to path would change; None when the file is already so.
    With dir_fd, path is a name in that directory."""
    path = Path(path)
    new = content.encode() if isinstance(content, str) else content
    try:
        old, st = read_regular(path, dir_fd=dir_fd) or (None, None)
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
                 group: str | None = None, *, dir_fd: int | None = None) -> None:
    """Replace path with content; mode and owner are set before the rename.

    With dir_fd, path is a name in that directory (see :func:`open_beneath`).
    """
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    uid, gid = _ids(owner, group)
    if dir_fd is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        parent = os.dup(dir_fd)
    try:
        tmp = f".{path.name}.{os.urandom(6).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                if uid != -1 or gid != -1:
                    os.fchown(f.fileno(), uid, gid)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=parent)
            except FileNotFoundError:
                pass
            raise
        os.fsync(parent)
    finally:
        os.close(parent)


def open_beneath(top: str | Path, relative: str, *, create: bool) -> int:
    """A descriptor of the directory top/relative, reached without following any symlink
    below top (top itself is no symlink either); missing directories are made (0755) when
    create, else FileNotFoundError. Raises NotRegularFile at a symlink or a non-directory."""
    def step(fd: int | None, name: str) -> int:
        try:
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                           dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotRegularFile(exc.errno, "a symbolic link or not a directory",
                                     name) from None
            raise

    fd = step(None, str(top))
    try:
        for name in [p for p in relative.split("/") if p]:
            if name == "..":
                raise NotRegularFile(errno.EINVAL, "a path out of the directory", relative)
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            fd, old = step(fd, name), fd
            os.close(old)
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def write_fifo(path: str, data: bytes) -> bool:
    """Write data to the FIFO at path if a reader has it open; False (nothing written) when
    nothing is there, nobody reads, or it is not a FIFO. The FIFO sits in a directory of the app
    user's: never through a symlink (O_NOFOLLOW), never into anything else (a regular file or
    device opened by mistake is closed unwritten), never blocking (O_NONBLOCK)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENXIO, errno.ELOOP, errno.EACCES, errno.EISDIR):
            return False  # ENXIO: a FIFO nobody has open for reading
        raise
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        return os.write(fd, data) == len(data)
    except (BlockingIOError, BrokenPipeError):
        return False
    finally:
        os.close(fd)


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
