"""bingo-host's own timers, each installed and enabled when its feature is on, stopped and
removed when it is off: snapshots (snapshots.enabled), the secrets refresh (a value read from
ssm:/secretsmanager:, which may rotate there), backups and restore drills (backups.enabled),
metrics (metrics.enabled), the journal export the CloudWatch agent reads (cloudwatch_agent.enabled,
where the platform has the agent), security patches (patches.enabled). One `systemctl show`
reads them all.

The certificate renewal timer belongs to `enable-https`; bootstrap only keeps its unit current.
"""

from __future__ import annotations

from typing import Sequence

from ... import layout
from ...facts import systemd
from ...facts.systemd import systemd_calendar
from ...ops import service
from ...ops.service import DAEMON_RELOAD

NAME = "timers"
# (unit name, template prefix, the config field its OnCalendar= comes from, if any)
OWNED = ((layout.SNAPSHOT_UNIT, "snapshot", "snapshots.schedule"),
         (layout.REFRESH_UNIT, "secrets-refresh", None),
         (layout.DUMP_UNIT, "backup", "backups.schedule"),
         (layout.DRILL_UNIT, "restore-drill", "backups.drill_schedule"),
         (layout.METRICS_UNIT, "metrics", None),
         (layout.JOURNAL_EXPORT_UNIT, "journal-export", None),
         (layout.PATCH_UNIT, "patch", "patches.schedule"))
UNITS = tuple(f"{unit}.timer" for unit, _, _ in OWNED)


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
    for mf in (ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")):
        ctx.ensure_file(mf)
    states = ctx.fact(systemd.states, *UNITS)
    enabled = []
    for unit, template, schedule_field in OWNED:
        wanted = [mf for mf in (ctx.managed(f"{template}.service"), ctx.managed(f"{template}.timer")) if mf]
        if wanted and schedule_field and any(ctx.differs(mf) for mf in wanted):
            section, name = schedule_field.split(".")  # systemd judges it before the timer is written
            systemd_calendar(getattr(getattr(ctx.cfg, section), name), schedule_field)
        paths = [f"{layout.SYSTEMD_DIR}/{unit}.service", f"{layout.SYSTEMD_DIR}/{unit}.timer"]
        converge_timer(ctx, f"{unit}.timer", wanted, paths, states[f"{unit}.timer"])
        if wanted:
            enabled.append(template)
    return f"enabled: {', '.join(enabled) or 'none'}"
