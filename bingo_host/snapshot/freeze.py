"""Freezing the data filesystem, and the watchdog that always thaws it.

The FIFREEZE/FITHAW ioctls are made by this process, not by an `fsfreeze` child: a child can
outlive a killed run and complete its freeze after the watchdog thawed, while a signal (SIGKILL
too) takes effect only once our ioctl has returned. A run that dies or hangs while frozen would
hang MariaDB with it, so :class:`Watchdog` starts a separate process first that thaws when the
run is gone or frozen for too long.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import BingoHostError

log = logging.getLogger(__name__)

FREEZE_TIMEOUT = 25.0  # seconds frozen before the watchdog kills the snapshot and thaws
STOP_TIMEOUT = 25.0  # the watchdog's exit after its pipe closed (it may thaw first)
FIFREEZE = 0xC0045877  # _IOWR('X', 119, int), linux/fs.h
FITHAW = 0xC0045878  # _IOWR('X', 120, int)


class FreezeError(BingoHostError):
    pass


class AlreadyFrozen(FreezeError):
    """Someone else froze it: not ours to thaw."""


def check_freezable(mountpoint: str) -> None:
    """Refuse anything but a mount point of its own that is not the root filesystem.

    fsfreeze freezes the filesystem *containing* its argument: on a plain directory under /
    it would freeze /.
    """
    path = Path(mountpoint)
    if not path.is_dir():
        raise FreezeError(f"{mountpoint}: not a directory: is the data volume mounted?")
    if not os.path.ismount(path):
        raise FreezeError(f"{mountpoint} is not a mount point: the data volume is not mounted "
                          "there, and freezing it would freeze the filesystem under it")
    if path.resolve() == Path("/") or os.stat(path).st_dev == os.stat("/").st_dev:
        raise FreezeError(f"{mountpoint} is on the root filesystem: refusing to freeze /")


def _ioctl(mountpoint: str, request: int) -> None:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, 0)
    finally:
        os.close(fd)


def freeze(mountpoint: str) -> None:
    """Freeze the filesystem mounted at mountpoint (it flushes first: this can take a while).

    Raises AlreadyFrozen when it was frozen already. Any other way out of this call, a signal's
    exception included, may have left it frozen: the caller thaws.
    """
    try:
        _ioctl(mountpoint, FIFREEZE)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise AlreadyFrozen(f"{mountpoint} is frozen already (fsfreeze by someone "
                                "else?): not snapshotting it") from None
        raise FreezeError(f"cannot freeze {mountpoint}: {exc.strerror}") from None


def thaw(mountpoint: str, *, missing_ok: bool = False) -> bool:
    """Thaw mountpoint; with missing_ok, 'not frozen' (EINVAL) is no error.

    Returns True when this call thawed it.
    """
    try:
        _ioctl(mountpoint, FITHAW)
    except OSError as exc:
        if exc.errno == errno.EINVAL and missing_ok:
            return False
        raise FreezeError(f"cannot thaw {mountpoint}: {exc.strerror}") from None
    return True


class Watchdog:
    """The parent's side of the watchdog process (`python -m bingo_host.snapshot.freeze --watch`: a
    fresh interpreter in its own session, holding none of our file descriptors, so not the database
    connection), spoken to over a pipe on its stdin:
    * ``arm`` before the freeze; ``disarm`` only after a thaw, or a freeze refused for certain;
    * end of file, or our pidfd readable: we are gone; if armed, it thaws at once;
    * armed for longer than the timeout: we hang while (maybe) frozen; it SIGKILLs us (so MariaDB
      drops the backup lock with our session), waits until we are gone, then thaws.
    It ignores SIGTERM/SIGINT/SIGHUP, so stopping the unit still lets it see us go and thaw."""

    def __init__(self, mountpoint: str, timeout: float = FREEZE_TIMEOUT):
        self.mountpoint = mountpoint
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 15.0) -> "Watchdog":
        pkg_root = str(Path(__file__).resolve().parents[2])  # holds bingo_host/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        # Popen, not subp.run: this is a helper that lives as long as the snapshot, not a
        # command we wait for. close_fds keeps the database socket out of it.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bingo_host.snapshot.freeze", "--watch", str(os.getpid()),
             self.mountpoint, f"{self.timeout:g}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            start_new_session=True, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], ready_timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.proc.kill()
            self.proc.wait()
            raise FreezeError("the freeze watchdog did not start; not freezing without it")
        log.debug("freeze watchdog pid %d watching %s (timeout %g s)",
                  self.proc.pid, self.mountpoint, self.timeout)
        return self

    def _send(self, word: str) -> None:
        assert self.proc and self.proc.stdin
        try:
            self.proc.stdin.write(word.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise FreezeError("the freeze watchdog died; not freezing without it") from None

    def arm(self) -> None:
        if self.proc.poll() is not None:
            raise FreezeError("the freeze watchdog died; not freezing without it")
        self._send("arm")

    def disarm(self) -> None:
        self._send("disarm")

    def stop(self) -> int | None:
        """Close the pipe (the watchdog exits; it thaws first if still armed)."""
        if not self.proc:
            return None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("freeze watchdog pid %d did not exit; leaving it", self.proc.pid)
            return None
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()


# -- the watchdog process --

def _say(msg: str) -> None:
    print(f"bingo-host freeze watchdog: {msg}", file=sys.stderr, flush=True)


def _thaw_quietly(mountpoint: str) -> None:
    try:
        if thaw(mountpoint, missing_ok=True):
            _say(f"thawed {mountpoint}")
    except BingoHostError as exc:
        _say(f"could not thaw {mountpoint}: {exc}")


def _wait_gone(pidfd: int | None) -> None:
    """Until the parent has exited: its pidfd turns readable (else: its end of our stdin closes)."""
    if pidfd is not None:
        select.select([pidfd], [], [])
        return
    while os.read(0, 4096):
        pass


def watch(parent_pid: int, mountpoint: str, timeout: float) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        pidfd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):
        pidfd = None  # the pipe alone still tells
    if os.getppid() != parent_pid:
        return 1  # the parent is already gone (and we may hold a reused pid)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    armed_at: float | None = None
    watched = [0] + ([pidfd] if pidfd is not None else [])
    while True:
        left = None if armed_at is None else armed_at + timeout - time.monotonic()
        if left is not None and left <= 0:
            _say(f"parent pid {parent_pid} still frozen after {timeout:g} s: killing it and "
                 f"thawing {mountpoint}")
            try:
                if pidfd is not None:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                else:
                    os.kill(parent_pid, signal.SIGKILL)
            except (ProcessLookupError, OSError):
                pass
            _wait_gone(pidfd)  # a freeze it is inside completes first: thaw only after that
            _thaw_quietly(mountpoint)
            return 3
        ready, _, _ = select.select(watched, [], [], left)
        gone = pidfd is not None and pidfd in ready
        data = os.read(0, 4096) if 0 in ready else b""
        for word in data.split():
            if word == b"arm":
                armed_at = time.monotonic()
            elif word == b"disarm":
                armed_at = None
        if (0 in ready and not data) or gone:
            if armed_at is not None:
                _say(f"parent pid {parent_pid} exited while {mountpoint} may be frozen: thawing")
                _thaw_quietly(mountpoint)
                return 2
            return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bingo_host.snapshot.freeze")
    parser.add_argument("--watch", type=int, required=True, metavar="PARENT_PID")
    parser.add_argument("mountpoint")
    parser.add_argument("timeout", type=float)
    args = parser.parse_args(argv)
    return watch(args.watch, args.mountpoint, args.timeout)


if __name__ == "__main__":
    sys.exit(_main())
