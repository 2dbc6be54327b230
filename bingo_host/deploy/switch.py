"""Switching the serving release: the atomic `current` link, the release started on the slot
that does not serve (slots.py: its master imports it once and forks every worker), nginx's
upstream pointed at that slot once every worker accepts and the app answers there, and the old
slot drained and stopped. Its time is one import of the app whatever the worker count; the two
slots' memory exists together only for those seconds.

A deployment starts the release on that slot at the end of AfterInstall (prestart), so its
import overlaps the agent's way to ApplicationStart; the vassal file names the release, not
`current`, for that. Used by ApplicationStart, by ValidateService's switch back, by
`bingo-host rollback`, and by the uwsgi step (a new setting or bingo.ini starts on the other slot
too). A release counts as serving only when every worker of the new slot runs in its directory,
nginx points at that slot, and no process of the old slot is left. A release that cannot be
imported never gets a request: its slot never becomes ready, is stopped, and the old slot serves
on.
"""

from __future__ import annotations

import logging
import os
import pwd
import time

from .. import layout
from ..errors import BingoHostError
from ..facts import uwsgi
from ..ops import files, service
from ..ops.service import RELOAD_APP
from . import DeployError, env_seconds, first_bind, slots
from .releases import PLACEHOLDER, Paths

log = logging.getLogger(__name__)

LOAD_TIMEOUT = 90.0  # $BINGO_HOST_LOAD_TIMEOUT: a slot loading a release (the emperor's spawn + import)


def serving_release(ctx, slot: str | None) -> str | None:
    """The release directory every worker of `slot` runs in (app.processes of them), else None."""
    if slot is None:
        return None
    uid = pwd.getpwnam(ctx.cfg.app.user).pw_uid
    vassal = layout.slot_vassal_file(ctx.cfg.app.name, slot)
    pids = uwsgi.vassal_pids(vassal)
    cwds = {pid: cwd for pid, cwd in uwsgi.workers(Paths(ctx.cfg.app.root).releases, uid) if pid in pids}
    found = set(cwds.values())
    return found.pop() if len(cwds) >= ctx.cfg.app.processes and len(found) == 1 else None


def up_to_date(ctx, name: str) -> bool:
    """Whether the serving slot already runs release `name` with the settings and files it
    should (nothing owed to the app): then a switch to it only moves `current`."""
    app = ctx.cfg.app.name
    slot = slots.serving(app)
    if slot is None or ctx.pending(RELOAD_APP) or slots.vassals(app) != [layout.slot_vassal_file(app, slot)]:
        return False
    ctx.app_slot, ctx.app_release = slot, name
    if any(ctx.differs(ctx.managed(name)) for name in ("uwsgi-vassal.ini", *layout.HEALTH_SOURCES)):
        return False
    return serving_release(ctx, slot) == os.path.realpath(Paths(ctx.cfg.app.root).release(name))


def prestart(ctx, name: str) -> None:
    """Release `name` started on the slot that does not serve, without waiting for it and
    without pointing nginx at it: AfterInstall's last act, so that the app's import and first
    request run while the agent goes on to ApplicationStart, whose switch then finds the slot
    loaded (start_other_slot keeps it when its vassal file is still what the switch would
    write). Nothing when no slot serves: the first start may need the emperor restarted, which
    the switch does. Whether the slot loads is the switch's question (it fails there, the old
    slot serving on), and so is a stale slot that will not stop here: a head start is not worth
    failing a deployment for."""
    app = ctx.cfg.app.name
    serving = slots.serving(app)
    if serving is None:
        return
    new = slots.other(serving)
    try:
        slots.stop_idle(ctx)
        ensure_health_sources(ctx)
    except BingoHostError as exc:
        log.warning(f"uwsgi: release {name} not started ahead of ApplicationStart: {exc}")
        return
    ctx.app_slot, ctx.app_release = new, name
    first_bind.forget(app, new)
    ctx.ensure_file(ctx.managed("uwsgi-vassal.ini"))
    slots.wake_emperor()
    log.info(f"uwsgi: slot {new} loading {name} beside slot {serving}")


def ensure_health_sources(ctx) -> bool:
    """The health wrapper's files as this bingo-host has them (a newer one may bring newer
    ones): a slot started after this loads them. Whether any was written."""
    return any([ctx.ensure_file(ctx.managed(source)) for source in layout.HEALTH_SOURCES])


def start_other_slot(ctx, release: str) -> None:
    """Release `release` started on the slot that does not serve (or found there, started by
    prestart with the same vassal file), made the serving one; every other vassal of the app
    drained and stopped. On failure the new slot is stopped and the old one still serves."""
    app = ctx.cfg.app.name
    old = slots.vassals(app)
    new = slots.other(slots.serving(app))
    vassal = layout.slot_vassal_file(app, new)
    wrapper_changed = ensure_health_sources(ctx)
    ctx.app_slot, ctx.app_release = new, release
    # prestart's slot is kept while another serves and it loaded what this switch would load
    started = (vassal in old and len(old) > 1 and not wrapper_changed
               and not ctx.differs(ctx.managed("uwsgi-vassal.ini")))
    if vassal in old:  # never the slot nginx points at
        old.remove(vassal)
        if started:
            log.info(f"uwsgi: slot {new} was started for {release} already")
        else:  # left by an interrupted switch, or started with other settings
            slots.stop(ctx, vassal)
    if not old:
        # No vassal ran, so nothing is served by uWSGI: restarting the emperor costs nothing,
        # and it must watch the vassals directory as a directory (an emperor started before
        # the directory existed watches the path as a single file and never spawns vassals).
        # Before the vassal is written: after, a running emperor would have spawned it already
        # and the restart would start every worker twice.
        service.systemctl("restart", f"{layout.UWSGI_SERVICE}.service")
        log.info("uwsgi: emperor restarted (no app was running)")
    if not started:
        first_bind.forget(app, new)
        if ctx.ensure_file(ctx.managed("uwsgi-vassal.ini")) and old:
            slots.wake_emperor()
    ctx.done(RELOAD_APP)  # what bingo.ini or the health check owed: the new slot pays it
    try:
        took = slots.wait_ready(ctx, new, env_seconds("BINGO_HOST_LOAD_TIMEOUT", LOAD_TIMEOUT))
    except BingoHostError:
        slots.kill(ctx, vassal)
        raise
    slots.point(app, new)
    start = time.monotonic()
    for path in old:
        slot = next((s for s in layout.SLOTS if path == layout.slot_vassal_file(app, s)), None)
        slots.drain(app, slot)
        slots.stop(ctx, path)
    if layout.vassal_file(app) in old:
        slots.point(app, new)  # the vassal from before slots may have removed its socket's path
    log.info(f"uwsgi: slot {new} ready in {took:.1f} s ({ctx.cfg.app.processes} workers); "
             f"{len(old)} old vassal(s) drained and stopped in {time.monotonic() - start:.1f} s")


def activate(ctx, name: str) -> None:
    """Point `current` at releases/<name> (or the placeholder) and make uWSGI serve it (see the
    module's docstring); no vassal runs for the placeholder."""
    paths = Paths(ctx.cfg.app.root)
    app = ctx.cfg.app.name
    files.symlink(paths.current, PLACEHOLDER if name == PLACEHOLDER else f"releases/{name}")
    log.info(f"switch: {paths.current} -> {name}")
    if name == PLACEHOLDER:
        for path in slots.vassals(app):
            slots.stop(ctx, path)
        if os.path.lexists(layout.app_socket(app)):
            os.unlink(layout.app_socket(app))
        return
    if up_to_date(ctx, name):
        log.info(f"uwsgi: slot {ctx.app_slot} already serves {name}")
        return
    start_other_slot(ctx, name)
    want = os.path.realpath(paths.release(name))
    ran = serving_release(ctx, slots.serving(app))
    if ran != want:
        raise DeployError(f"uWSGI slot {slots.serving(app)} runs {ran or 'no complete set of workers'}, "
                          f"not {want}")
    log.info(f"uwsgi: {ctx.cfg.app.processes} workers serving {name}")


def switch_with_fallback(ctx, name: str, previous: str | None) -> None:
    """activate(name); if uWSGI cannot load it, put `previous` back and fail."""
    try:
        activate(ctx, name)
    except BingoHostError as exc:
        if previous:
            log.info(f"switch: {name} did not load; switching back to {previous}")
            try:
                activate(ctx, previous)
            except BingoHostError as again:
                raise DeployError(f"{exc}\nand switching back to {previous} failed too: {again}") from None
        raise
