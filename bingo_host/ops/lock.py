"""Advisory locks: one holder at a time, the others wait up to a bound or fail at once.

Every lock bingo-host takes is a file in one directory, layout.LOCK_DIR (/run/bingo-host, 0700
root; BINGO_HOST_LOCK_DIR moves it, for tests), each file 0600 root. A flock needs only an open
file descriptor, a read-only one too: a lock file another user could open would let that user
(the app, after an exploit) hold the lock for good and block every snapshot, backup, drill
and restore. So this module alone decides where locks live and their modes, and it repairs what
it finds: the directory is made 0700 again, and a lock file that is not a 0600 file of ours is
replaced (unlinked, made anew) before it is locked. Whoever held the old file holds nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from contextlib import contextmanager
from typing import Iterator

from .. import layout
from ..errors import BingoHostError

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700

# name -> what holds it, in messages
LOCKS = {
    "host": "another bingo-host run",
    "snapshot": "a bingo-host snapshot",
    "backup": "a bingo-host backup or drill",
}


def lock_dir() -> str:
    return os.environ.get("BINGO_HOST_LOCK_DIR") or layout.LOCK_DIR


def lock_path(name: str) -> str:
    return os.path.join(lock_dir(), f"{name}.lock")


def legacy_path(name: str) -> str:
    """A lock file outside LOCK_DIR that nothing takes (upgraded hosts hold some): removed too."""
    return "/run/bingo-host.lock" if name == "host" else f"{layout.STATE_DIR}/{name}.lock"


def _ensure_dir(path: str) -> None:
    """path as a 0700 directory of this user's (made if missing); anything else is refused."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise BingoHostError(f"{path} must be a directory owned by uid {os.geteuid()} (the locks "
                             f"live there); it is not: move it away")
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def _open(path: str) -> int:
    """An fd on path, a regular 0600 file of this user's; any other file there is replaced."""
    flags = os.O_RDWR | os.O_NOFOLLOW  # Python's own fds are close-on-exec already
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            return fd
        except FileExistsError:
            pass
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError as exc:
            if not os.path.islink(path):
                raise BingoHostError(f"cannot open the lock {path}: {exc.strerror}") from None
            os.unlink(path)  # a symlink in its place
            continue
        st = os.fstat(fd)
        if (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
                and stat.S_IMODE(st.st_mode) == FILE_MODE):
            return fd
        os.close(fd)
        os.unlink(path)  # another's, or one others may have opened: locks go on a new inode


@contextmanager
def flock(name: str, wait: float) -> Iterator[None]:
    """Hold the exclusive lock `name` (one of LOCKS; the holder's pid written in it). Wait up
    to `wait` seconds for another holder (saying so once), then raise BingoHostError
    naming the holder."""
    what = LOCKS[name]
    directory = lock_dir()
    _ensure_dir(directory)
    path = lock_path(name)
    if directory == layout.LOCK_DIR:
        try:
            os.unlink(legacy_path(name))
        except FileNotFoundError:
            pass
    deadline = time.monotonic() + wait
    said = False
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if time.monotonic() >= deadline:
                waited = f" after {wait:.0f} s" if wait else ""
                raise BingoHostError(f"{what} (pid {holder}) holds {path}{waited}") from None
            if not said:
                log.info(f"waiting for {what} to finish (pid {holder}, lock {path})")
                said = True
            time.sleep(0.2)
            continue
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # replaced while we waited (see _open): lock the file that is there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def host_lock(wait: float = 600):
    """One bingo-host run that changes the host at a time (bootstrap, hooks, enable-https...)."""
    return flock("host", wait)


def snapshot_lock(wait: float = 0):
    """One snapshot at a time; a restore --snapshot holds it too."""
    return flock("snapshot", wait)


def backup_lock(wait: float = 0):
    """One backup or drill at a time (their timers can meet: the second waits)."""
    return flock("backup", wait)
