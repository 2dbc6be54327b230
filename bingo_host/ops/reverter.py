"""Back up, write, test, then reload or restore: the one reverter for nginx's files, as certbot's
nginx plugin has one; and for a service with no config test (MariaDB), restart or restore.

A configuration `nginx -t` rejects must neither be reloaded nor stay on disk for the next reload
(certbot's deploy hook, a reboot) to find. So bingo-host's writes to nginx's files (the nginx step,
enable-https's TLS site) go through ``writing``: back up the files, owe the reload, write, test;
any failure puts every file back byte for byte, mode included, and nginx runs on as it was.
``Backup`` alone undoes what someone else changed (certbot's temporary challenge files).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Iterator

from . import files, service
from .cleanup import Cleanup
from .. import subp
from ..errors import BingoHostError, CommandError
from .service import RELOAD_NGINX

SERVICE = "nginx.service"


def saved(path: str):
    """What is at path now: ('link', target), ('file', bytes, mode) or None."""
    if os.path.islink(path):
        return ("link", os.readlink(path))
    try:
        with open(path, "rb") as f:
            return ("file", f.read(), os.fstat(f.fileno()).st_mode & 0o7777)
    except FileNotFoundError:
        return None


def _put_back(path: str, saved) -> None:
    if saved is not None and saved[0] == "file":
        files.write_atomic(path, saved[1], saved[2])
        return
    if os.path.lexists(path):
        os.unlink(path)
    if saved is not None:
        os.symlink(saved[1], path)


class Backup:
    """What some paths hold now (``read``: saved, or a context's fact of it), to put back later."""

    def __init__(self, paths: Iterable[str], read=saved):
        self._saved = {path: read(path) for path in paths}

    def restore(self) -> list[str]:
        """Put back every path that changed since the backup; the paths put back."""
        changed = [path for path, was in self._saved.items() if saved(path) != was]
        for path in changed:
            _put_back(path, self._saved[path])
        return changed

    def complete(self) -> bool:
        """Every path held something: putting them back gives a whole earlier configuration."""
        return all(was is not None for was in self._saved.values())


def running_or_put_back(ctx, unit: str, owed: str, backup: Backup | None, timeout: float = 180):
    """service.ensure_running; when the unit fails to (re)start on files this run changed
    (``backup``: what they held before), put them back and restart it on them: a service with
    no config test must not stay down on a configuration it refuses. It is still an error. A
    backup of files that were absent (a first run) is not a configuration to go back to."""
    try:
        return service.ensure_running(ctx, unit, owed, timeout=timeout)
    except CommandError as exc:
        if backup is None or not backup.complete():
            raise
        put_back = backup.restore()
        if not put_back:
            raise
        service.daemon_reload()
        service.systemctl("restart", unit, timeout=timeout)
        ctx.done(owed)
        raise BingoHostError(f"{unit} did not start with the new configuration, so {', '.join(put_back)} "
                             f"were put back and it runs on them again: {exc}") from None


def config_test() -> None:
    try:
        subp.run(["nginx", "-t", "-q"], timeout=60)
    except CommandError as exc:
        raise BingoHostError(f"nginx -t rejected the new configuration, previous files restored:\n"
                             f"{exc.stderr.strip()}") from None


@contextmanager
def writing(ctx, paths: Iterable[str]) -> Iterator[None]:
    """Back up paths and owe nginx a reload, let the caller write them, then `nginx -t`. On any
    failure the paths are restored and the reload is no longer owed. The owed reload (a pending
    action, kept across a SIGKILL) is paid by ``serve``, by this run or the next."""
    backup = Backup(paths, read=lambda path: ctx.fact(saved, path))
    ctx.set_pending(RELOAD_NGINX)
    with Cleanup() as undo:  # a SIGTERM mid-write puts the files back too
        undo.register(ctx.done, RELOAD_NGINX)
        undo.register(ctx.change, "put nginx's files back as they were", backup.restore)
        yield
        ctx.change("nginx -t", config_test)


def serve(ctx) -> None:
    """nginx enabled and running; reloaded (after `nginx -t`) when a reload is owed."""
    service.ensure_running(ctx, SERVICE, RELOAD_NGINX, verb="reload", before_start=config_test)
