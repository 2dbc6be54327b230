"""Security patches: the tools' config (Debian: unattended-upgrades for the security origin only,
needrestart listing instead of restarting) and bingo-host-patch.timer, which runs `bingo-host
patch` (patches.py); all removed again when patches.enabled is false. The tools themselves are
installed by the packages step."""

from __future__ import annotations

from ... import layout
from ...facts import systemd
from ...fields import systemd_calendar
from .timers import converge_timer, unit_paths

NAME = "patches"
TIMER = f"{layout.PATCH_UNIT}.timer"


def converge(ctx) -> str:
    wanted = [mf for mf in (ctx.managed("patch.service"), ctx.managed("patch.timer")) if mf]
    if wanted and any(ctx.differs(mf) for mf in wanted):
        systemd_calendar(ctx.cfg.patches.schedule, "patches.schedule")  # before writing the timer
    for template, path in ctx.platform.patch_config:
        mf = ctx.managed(template)
        if mf:
            ctx.ensure_file(mf)
        else:
            ctx.remove_file(path)
    converge_timer(ctx, TIMER, wanted, unit_paths(layout.PATCH_UNIT), systemd.states(TIMER)[TIMER])
    if not wanted:
        return "patches disabled: no timer"
    return f"{TIMER} enabled ({ctx.cfg.patches.schedule}), security updates only"
