"""The snapshot timer: installed and enabled when snapshots.enabled, stopped and removed if not.

The certificate renewal timer belongs to `enable-https`; bootstrap only keeps its unit current.
"""

from __future__ import annotations


from ... import layout
from ...facts import systemd
from ...fields import systemd_calendar
from ...ops import service
from ...render import DAEMON_RELOAD

NAME = "timers"
TIMER = f"{layout.SNAPSHOT_UNIT}.timer"
UNITS = [f"{layout.SYSTEMD_DIR}/{layout.SNAPSHOT_UNIT}.service", f"{layout.SYSTEMD_DIR}/{TIMER}"]


def converge(ctx) -> str:
    renew = [ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")]
    wanted = [mf for mf in (ctx.managed("snapshot.service"), ctx.managed("snapshot.timer")) if mf]
    if wanted and any(ctx.differs(mf) for mf in wanted):
        systemd_calendar(ctx.cfg.snapshots.schedule, "snapshots.schedule")  # before writing the timer
    for mf in renew + wanted:  # unit files: their on_change is DAEMON_RELOAD
        ctx.ensure_file(mf)
    state = systemd.states(TIMER)[TIMER]
    if not wanted:
        if state.load == "loaded" and (state.is_enabled or state.running):
            ctx.change(f"disable --now {TIMER}", lambda: service.systemctl("disable", "--now", TIMER))
        for path in UNITS:
            if ctx.remove_file(path):
                ctx.set_pending(DAEMON_RELOAD)
    if ctx.pending(DAEMON_RELOAD):
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)
    if not wanted:
        return "snapshots disabled: no timer"
    if not state.is_enabled or not state.running:
        ctx.change(f"enable --now {TIMER}", lambda: service.systemctl("enable", "--now", TIMER))
    return f"{TIMER} enabled ({ctx.cfg.snapshots.schedule})"
