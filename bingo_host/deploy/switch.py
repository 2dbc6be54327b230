"""Switching the serving release: the atomic `current` link, a graceful uWSGI reload, and waiting
until every uWSGI process runs the new release, with a way back when it does not load.

Used by ApplicationStart, by ValidateService's switch back, and by `bingo-host rollback`. A
release counts as serving only when uWSGI's processes run in its directory (`chdir` resolves the
`current` link when they start), not when the link changed.
"""

from __future__ import annotations

import os
import time

from .. import layout, subp
from ..errors import BingoHostError
from ..ops import files, service
from . import DeployError, env_seconds
from ..render import RELOAD_APP
from .releases import PLACEHOLDER, Paths

LOAD_TIMEOUT = 90.0  # $BINGO_HOST_LOAD_TIMEOUT: uWSGI loading a release (emperor scan 1 s + reload mercy)


def _uwsgi_processes(root: str, uid: int) -> list[tuple[int, str]]:
    """(pid, cwd) of the app's uWSGI processes (master and workers run as the app user, in the
    release directory they loaded: `chdir` resolves the `current` link when they start)."""
    import psutil

    prefix = os.path.realpath(root) + "/"
    out = []
    for p in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            if "uwsgi" not in " ".join(p.info["cmdline"] or ()):
                continue
            cwd = p.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd.startswith(prefix):
            out.append((p.info["pid"], cwd))
    return out


def _bump_mtime(path: str, before: float | None) -> None:
    """Touch path so its whole-second mtime moves past what the emperor last saw."""
    wanted = max(int(time.time()), int(before or 0) + 1)
    os.utime(path, (wanted, wanted))


def wait_loaded(ctx, name: str, timeout: float, echo=print) -> None:
    """Until every uWSGI process of the app runs in release `name` (none for the placeholder)."""
    import pwd

    paths = Paths(ctx.cfg.app.root)
    uid = pwd.getpwnam(ctx.cfg.app.user).pw_uid
    want = None if name == PLACEHOLDER else os.path.realpath(paths.release(name))
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    procs: list = []
    while time.monotonic() < deadline:
        procs = _uwsgi_processes(ctx.cfg.app.root, uid)
        if want is None and not procs:
            return
        if want is not None and len(procs) >= 2 and all(cwd == want for _, cwd in procs):
            echo(f"uwsgi: {len(procs)} processes serving {name} ({time.monotonic() - start:.1f} s)")
            return
        time.sleep(0.3)
    where = sorted({os.path.basename(cwd) for _, cwd in procs}) or ["no process"]
    tail = subp.run(["journalctl", "-u", layout.UWSGI_SERVICE, "-n", "15", "--no-pager", "-o", "cat"],
                    rcs=range(256), timeout=30).stdout.strip()
    raise DeployError(f"uWSGI did not load {name} within {timeout:.0f} s "
                      f"(its processes run in: {', '.join(where)})\n{tail}")


def activate(ctx, name: str, echo=print) -> None:
    """Point `current` at releases/<name> (or the placeholder), reload the app gracefully, and
    wait until uWSGI serves it. The vassal file exists only while a release is current."""
    paths = Paths(ctx.cfg.app.root)
    files.symlink(paths.current, PLACEHOLDER if name == PLACEHOLDER else f"releases/{name}")
    echo(f"switch: {paths.current} -> {name}")
    vassal = ctx.managed("uwsgi-vassal.ini")
    if name == PLACEHOLDER:
        ctx.remove_file(vassal.path)
    else:
        before = os.stat(vassal.path).st_mtime if os.path.exists(vassal.path) else None
        ctx.ensure_file(ctx.managed("health_wsgi.py"))  # a newer bingo-host may bring a newer one
        ctx.ensure_file(vassal)
        _bump_mtime(vassal.path, before)
        ctx.done(RELOAD_APP)  # what bingo.ini or the health check owed: this reload pays it
        if before is None:
            # No vassal ran, so nothing is served by uWSGI: restarting the emperor costs nothing,
            # and it must watch the vassals directory as a directory (an emperor started before
            # the directory existed watches the path as a single file and never spawns vassals).
            service.systemctl("restart", f"{layout.UWSGI_SERVICE}.service")
            echo(f"uwsgi: installed {vassal.path}; emperor restarted (no app was running)")
        else:
            echo(f"uwsgi: graceful reload (touched {vassal.path})")
    wait_loaded(ctx, name, env_seconds("BINGO_HOST_LOAD_TIMEOUT", LOAD_TIMEOUT), echo)


def switch_with_fallback(ctx, name: str, previous: str | None, echo=print) -> None:
    """activate(name); if uWSGI cannot load it, put `previous` back and fail."""
    try:
        activate(ctx, name, echo)
    except BingoHostError as exc:
        if previous:
            echo(f"switch: {name} did not load; switching back to {previous}")
            try:
                activate(ctx, previous, echo)
            except BingoHostError as again:
                raise DeployError(f"{exc}\nand switching back to {previous} failed too: {again}") from None
        raise
