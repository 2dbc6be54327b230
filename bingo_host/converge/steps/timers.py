"""bingo-host's own timers: snapshots (snapshots.enabled), backups and restore drills
(backups.enabled). Each is installed and enabled when its setting is on, stopped and removed
when it is off.

The certificate renewal timer belongs to `enable-https`; bootstrap only keeps its unit current.
"""

from __future__ import annotations


from ... import layout
from ...facts import systemd
from ...fields import systemd_calendar
from ...ops import service
from ...render import DAEMON_RELOAD

NAME = "timers"


def _timers(cfg) -> list[tuple[str, str, bool, str, str]]:
    """(unit name, template stem, wanted, schedule field, schedule) for each timer."""
    return [
        (layout.SNAPSHOT_UNIT, "snapshot", cfg.snapshots.enabled, "snapshots.schedule",
         cfg.snapshots.schedule),
        (layout.DUMP_UNIT, "backup", cfg.backups.enabled, "backups.schedule", cfg.backups.schedule),
        (layout.DRILL_UNIT, "restore-drill", cfg.backups.enabled, "backups.drill_schedule",
         cfg.backups.drill_schedule),
    ]


def converge(ctx) -> str:
    for mf in (ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")):
        ctx.ensure_file(mf)  # unit files: their on_change is DAEMON_RELOAD
    enable, said = [], []
    for unit, stem, on, field, schedule in _timers(ctx.cfg):
        timer = f"{unit}.timer"
        wanted = [mf for mf in (ctx.managed(f"{stem}.service"), ctx.managed(f"{stem}.timer")) if mf]
        if wanted and any(ctx.differs(mf) for mf in wanted):
            systemd_calendar(schedule, field)  # before writing the timer
        for mf in wanted:
            ctx.ensure_file(mf)
        state = systemd.states(timer)[timer]
        if not on:
            if state.load == "loaded" and (state.is_enabled or state.running):
                ctx.change(f"disable --now {timer}",
                           lambda timer=timer: service.systemctl("disable", "--now", timer))
            for path in (f"{layout.SYSTEMD_DIR}/{unit}.service", f"{layout.SYSTEMD_DIR}/{timer}"):
                if ctx.remove_file(path):
                    ctx.set_pending(DAEMON_RELOAD)
            said.append(f"no {timer}")
        else:
            if not state.is_enabled or not state.running:
                enable.append(timer)
            said.append(f"{timer} enabled ({schedule})")
    if ctx.pending(DAEMON_RELOAD):
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)
    for timer in enable:
        ctx.change(f"enable --now {timer}", lambda timer=timer: service.systemctl("enable", "--now", timer))
    return "; ".join(said)
