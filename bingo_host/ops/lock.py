"""Advisory locks: one holder at a time, the others wait up to a bound or fail at once."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from .. import layout
from ..errors import BingoHostError


@contextmanager
def flock(path: str, wait: float = 0, what: str = "another run", mode: int = 0o600,
          echo: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on path (created if missing; the holder's pid written in it).
    Wait up to `wait` seconds for another holder (saying so through echo), then raise
    BingoHostError naming the holder."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        deadline = time.monotonic() + wait
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    waited = f" after {wait:.0f} s" if wait else ""
                    raise BingoHostError(f"{what} (pid {holder}) holds {path}{waited}") from None
                if echo and not said:
                    echo(f"waiting for {what} to finish (pid {holder}, lock {path})")
                    said = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def host_lock(wait: float = 600, echo: Callable[[str], None] = print):
    """One bingo-host run that changes the host at a time (bootstrap, hooks, enable-https...)."""
    return flock(layout.LOCK_FILE, wait, "another bingo-host run", echo=echo)
