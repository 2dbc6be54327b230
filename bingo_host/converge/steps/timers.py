"""bingo-host's own timers, each installed and enabled while the config wants it, stopped and
removed when not: snapshots (snapshots.enabled), the secrets refresh (a value read from
ssm:/secretsmanager:, which may rotate there), backups and restore drills (backups.enabled).

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
# (unit, template stem, schedule field or None) of each timer this step owns
TIMERS = ((layout.SNAPSHOT_UNIT, "snapshot", "snapshots.schedule"),
          (layout.REFRESH_UNIT, "secrets-refresh", None),
          (layout.DUMP_UNIT, "backup", "backups.schedule"),
          (layout.DRILL_UNIT, "restore-drill", "backups.drill_schedule"))


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


def _schedule(cfg, field: str) -> str:
    section, name = field.split(".")
    return getattr(getattr(cfg, section), name)


def converge(ctx) -> str:
    for mf in (ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")):
        ctx.ensure_file(mf)
    states = systemd.states(*(f"{unit}.timer" for unit, _, _ in TIMERS))
    enabled = []
    for unit, stem, field in TIMERS:
        timer = f"{unit}.timer"
        wanted = [mf for mf in (ctx.managed(f"{stem}.service"), ctx.managed(f"{stem}.timer")) if mf]
        schedule = _schedule(ctx.cfg, field) if field else None
        if wanted and field and any(ctx.differs(mf) for mf in wanted):
            systemd_calendar(schedule, field)  # before writing the timer
        converge_timer(ctx, timer, wanted, unit_paths(unit), states[timer])
        if wanted:
            enabled.append(f"{timer} ({schedule})" if schedule else timer)
    return f"enabled: {', '.join(enabled)}" if enabled else "no timer wanted (snapshots and backups off)"
