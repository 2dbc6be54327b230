"""The one safe read of a file a less trusted user may have put something else in place of.

Root reads a managed file only through :func:`read_regular`: never through a symlink, never a FIFO
(it would block) or a device (``/dev/zero`` never ends), never more than a size cap. It sits at
the bottom of the package so facts (reading the host) and ops (changing it) read the same way.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_READ = 1 << 20  # bytes: every file bingo-host manages or reads back is a few KiB


class NotRegularFile(OSError):
    """The path is a symlink, a FIFO, a device, a directory, or larger than the cap."""


def read_regular(path: str | Path, limit: int = MAX_READ, *,
                 dir_fd: int | None = None) -> tuple[bytes, os.stat_result] | None:
    """(content, stat) of the regular file at path; None if nothing is there.

    Never follows a symlink at path (O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK, and it
    is refused after fstat), never reads past limit. Raises NotRegularFile for anything that is
    not a regular file of at most limit bytes, OSError for the rest (EACCES...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC, dir_fd=dir_fd)
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
