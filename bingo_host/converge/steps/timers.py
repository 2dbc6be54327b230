"""bingo-host's own timers, each installed and enabled while the config wants it, stopped and
removed when not: snapshots (snapshots.enabled) and the secrets refresh (a value read from
ssm:/secretsmanager:, which may rotate there).

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
OWN = {TIMER: ("snapshot.service", "snapshot.timer"),  # timer: the templates of its units
       f"{layout.REFRESH_UNIT}.timer": ("secrets-refresh.service", "secrets-refresh.timer")}


def _units(timer: str) -> list[str]:
    base = f"{layout.SYSTEMD_DIR}/{timer.removesuffix('.timer')}"
    return [f"{base}.service", f"{base}.timer"]


def converge(ctx) -> str:
    renew = [ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")]
    wanted = {timer: [mf for mf in map(ctx.managed, templates) if mf] for timer, templates in OWN.items()}
    if wanted[TIMER] and any(ctx.differs(mf) for mf in wanted[TIMER]):
        systemd_calendar(ctx.cfg.snapshots.schedule, "snapshots.schedule")  # before writing the timer
    for mf in renew + [mf for files in wanted.values() for mf in files]:  # on_change: DAEMON_RELOAD
        ctx.ensure_file(mf)
    states = systemd.states(*OWN)
    for timer, files in wanted.items():
        if files:
            continue
        state = states[timer]
        if state.load == "loaded" and (state.is_enabled or state.running):
            ctx.change(f"disable --now {timer}",
                       lambda timer=timer: service.systemctl("disable", "--now", timer))
        for path in _units(timer):
            if ctx.remove_file(path):
                ctx.set_pending(DAEMON_RELOAD)
    if ctx.pending(DAEMON_RELOAD):
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)
    enabled = []
    for timer, files in wanted.items():
        if not files:
            continue
        if not states[timer].is_enabled or not states[timer].running:
            ctx.change(f"enable --now {timer}",
                       lambda timer=timer: service.systemctl("enable", "--now", timer))
        enabled.append(f"{timer} ({ctx.cfg.snapshots.schedule})" if timer == TIMER else timer)
    return f"enabled: {', '.join(enabled)}" if enabled else "snapshots disabled: no timer"
