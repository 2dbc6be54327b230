"""The snapshot timer: installed and enabled when snapshots.enabled, stopped and removed if not.

The certificate renewal timer belongs to `enable-https`; bootstrap only keeps its unit current.
`converge_timer` is how every step that owns a timer (monitoring, patches) installs or removes it.
"""

from __future__ import annotations

from typing import Sequence

from ... import layout
from ...facts import systemd
from ...fields import systemd_calendar
from ...ops import service
from ...render import DAEMON_RELOAD

NAME = "timers"
TIMER = f"{layout.SNAPSHOT_UNIT}.timer"


def unit_paths(unit: str) -> list[str]:
    return [f"{layout.SYSTEMD_DIR}/{unit}.service", f"{layout.SYSTEMD_DIR}/{unit}.timer"]


def converge_timer(ctx, timer: str, wanted: Sequence, paths: Sequence[str], state) -> None:
    """Write `wanted` (the unit files) and enable --now `timer`; with nothing wanted, disable it
    and remove `paths`. `state`: the timer's systemd.UnitState, read before."""
    for mf in wanted:  # unit files: their on_change is DAEMON_RELOAD
        ctx.ensure_file(mf)
    if not wanted:
        if state.load == "loaded" and (state.is_enabled or state.running):
            ctx.change(f"disable --now {timer}", lambda: service.systemctl("disable", "--now", timer))
        for path in paths:
            if ctx.remove_file(path):
                ctx.set_pending(DAEMON_RELOAD)
    if ctx.pending(DAEMON_RELOAD):
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)
    if wanted and (not state.is_enabled or not state.running):
        ctx.change(f"enable --now {timer}", lambda: service.systemctl("enable", "--now", timer))


def converge(ctx) -> str:
    renew = [ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")]
    wanted = [mf for mf in (ctx.managed("snapshot.service"), ctx.managed("snapshot.timer")) if mf]
    if wanted and any(ctx.differs(mf) for mf in wanted):
        systemd_calendar(ctx.cfg.snapshots.schedule, "snapshots.schedule")  # before writing the timer
    for mf in renew:
        ctx.ensure_file(mf)
    converge_timer(ctx, TIMER, wanted, unit_paths(layout.SNAPSHOT_UNIT), systemd.states(TIMER)[TIMER])
    if not wanted:
        return "snapshots disabled: no timer"
    return f"{TIMER} enabled ({ctx.cfg.snapshots.schedule})"
