"""The snapshot timer: installed and enabled when snapshots.enabled, stopped and removed if not.

The certificate renewal timer belongs to `enable-https`; bootstrap only keeps its unit current.
"""

from __future__ import annotations


from ... import layout, subp
from ...facts import systemd
from ...ops import service
from ...errors import BingoHostError, CommandError

NAME = "timers"
TIMER = f"{layout.SNAPSHOT_UNIT}.timer"
UNITS = [f"{layout.SYSTEMD_DIR}/{layout.SNAPSHOT_UNIT}.service", f"{layout.SYSTEMD_DIR}/{TIMER}"]


def check_schedule(schedule: str) -> None:
    """systemd is the judge of an OnCalendar= expression: ask it before writing the timer."""
    try:
        subp.run(["systemd-analyze", "calendar", schedule], timeout=30)
    except CommandError:
        raise BingoHostError(f"snapshots.schedule: systemd does not accept {schedule!r} "
                             "as an OnCalendar= expression") from None


def converge(ctx) -> str:
    renew = [ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")]
    wanted = [mf for mf in (ctx.managed("snapshot.service"), ctx.managed("snapshot.timer")) if mf]
    reload_needed = False
    if wanted and any(ctx.differs(mf) for mf in wanted):
        check_schedule(ctx.cfg.snapshots.schedule)
    for mf in renew + wanted:
        reload_needed |= ctx.ensure_file(mf)
    state = systemd.states(TIMER)[TIMER]
    if wanted:
        if reload_needed:
            ctx.change("systemctl daemon-reload", service.daemon_reload)
        if not state.is_enabled or not state.running:
            ctx.change(f"enable --now {TIMER}", lambda: service.systemctl("enable", "--now", TIMER))
        return f"{TIMER} enabled ({ctx.cfg.snapshots.schedule})"
    if state.load == "loaded" and (state.is_enabled or state.running):
        ctx.change(f"disable --now {TIMER}", lambda: service.systemctl("disable", "--now", TIMER))
    for path in UNITS:
        reload_needed |= ctx.remove_file(path)
    if reload_needed:
        ctx.change("systemctl daemon-reload", service.daemon_reload)
    return "snapshots disabled: no timer"
