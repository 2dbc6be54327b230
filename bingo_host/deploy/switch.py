"""Switching the serving release: the atomic `current` link, a chain reload of uWSGI's workers
(one at a time, so a warm worker always serves), and waiting until every worker runs the new
release, with a way back when it does not load.

Used by ApplicationStart, by ValidateService's switch back, and by `bingo-host rollback`. A
release counts as serving only when every uWSGI worker runs in its directory (each worker enters
`current` as it starts and loads the app there), not when the link changed. A worker that cannot
import the release exits before it accepts requests, so the chain stops there with the old
workers serving; switching `current` back lets its next respawn load the old release.
"""

from __future__ import annotations

import os
import time

from .. import layout, subp
from ..errors import BingoHostError
from ..facts import uwsgi
from ..ops import files, service
from . import DeployError, env_seconds
from ..ops.service import RELOAD_APP
from .releases import PLACEHOLDER, Paths

LOAD_TIMEOUT = 90.0  # $BINGO_HOST_LOAD_TIMEOUT: uWSGI loading a release (emperor scan 1 s + reload mercy)
RETOUCH_AFTER = 30.0  # uWSGI ignores a touch while a chain runs: touch again if still not loaded
# A master still finishing the previous chain (a switch back a moment ago) ignores our `c`: ask
# again this often until a first worker runs the wanted release (a repeated `c` is ignored).
NUDGE = 2.0
POLL = 0.1  # s between looks at the workers (and wake-ups of their master)
# Waking the master speeds a healthy chain up; past this many seconds per worker the chain is
# stalled (a release that cannot be imported) and the master keeps its own once-a-second pace,
# so a failing worker is not respawned any faster than uWSGI would by itself.
WAKE_PER_WORKER = 5.0


def wait_loaded(ctx, name: str, timeout: float, echo=print) -> None:
    """Until every uWSGI worker of the app (app.processes of them) runs in release `name` (none
    for the placeholder)."""
    import pwd

    paths = Paths(ctx.cfg.app.root)
    uid = pwd.getpwnam(ctx.cfg.app.user).pw_uid
    processes = ctx.cfg.app.processes
    want = None if name == PLACEHOLDER else os.path.realpath(paths.release(name))
    start = time.monotonic()
    deadline, retouch, nudge = start + timeout, start + RETOUCH_AFTER, start + NUDGE
    wake_until = start + WAKE_PER_WORKER * processes
    procs: list = []
    while time.monotonic() < deadline:
        procs = uwsgi.workers(Paths(ctx.cfg.app.root).releases, uid)
        if want is None and not procs:
            return
        if want is not None and len(procs) >= processes and all(cwd == want for _, cwd in procs):
            echo(f"uwsgi: {len(procs)} workers serving {name} ({time.monotonic() - start:.1f} s)")
            return
        if want is not None and not any(cwd == want for _, cwd in procs):
            retouch = min(retouch, nudge)
        if want is not None and time.monotonic() >= retouch:
            service.chain_reload_app(ctx.cfg.app.name)  # a chain that was already running ignored ours
            retouch, nudge = time.monotonic() + RETOUCH_AFTER, time.monotonic() + NUDGE
        if want is not None and time.monotonic() < wake_until:
            service.wake_app_master(ctx.cfg.app.name)
        time.sleep(POLL)
    where = sorted({os.path.basename(cwd) for _, cwd in procs}) or ["no worker"]
    journal = subp.run(["journalctl", "-u", layout.UWSGI_SERVICE, "-n", "60", "--no-pager", "-o", "cat"],
                       rcs=range(256), timeout=30).stdout.splitlines()
    # The last lines that say why (a stuck chain logs that it waits once a second).
    tail = "\n".join([line for line in journal if "chain is still waiting" not in line][-15:])
    raise DeployError(f"uWSGI did not load {name} within {timeout:.0f} s "
                      f"(its workers run in: {', '.join(where)})\n{tail}")


def activate(ctx, name: str, echo=print) -> None:
    """Point `current` at releases/<name> (or the placeholder), reload the workers one at a time,
    and wait until uWSGI serves it. The vassal file exists only while a release is current."""
    paths = Paths(ctx.cfg.app.root)
    files.symlink(paths.current, PLACEHOLDER if name == PLACEHOLDER else f"releases/{name}")
    echo(f"switch: {paths.current} -> {name}")
    vassal = ctx.managed("uwsgi-vassal.ini")
    if name == PLACEHOLDER:
        ctx.remove_file(vassal.path)
    else:
        before = os.stat(vassal.path).st_mtime if os.path.exists(vassal.path) else None
        ctx.ensure_file(ctx.managed("health_wsgi.py"))  # a newer bingo-host may bring a newer one
        changed = ctx.ensure_file(vassal)
        ctx.done(RELOAD_APP)  # what bingo.ini or the health check owed: this reload pays it
        if before is None:
            # No vassal ran, so nothing is served by uWSGI: restarting the emperor costs nothing,
            # and it must watch the vassals directory as a directory (an emperor started before
            # the directory existed watches the path as a single file and never spawns vassals).
            service.systemctl("restart", f"{layout.UWSGI_SERVICE}.service")
            echo(f"uwsgi: installed {vassal.path}; emperor restarted (no app was running)")
        elif changed:
            files.touch_past(vassal.path, before)  # the emperor compares whole seconds
            echo(f"uwsgi: {vassal.path} changed; the emperor reloads every worker at once")
        else:
            service.chain_reload_app(ctx.cfg.app.name)
            echo("uwsgi: chain reload, one worker at a time")
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
