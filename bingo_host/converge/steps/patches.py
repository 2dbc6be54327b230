"""The security patch tools' configuration (Debian: unattended-upgrades for the security origin
only, needrestart listing instead of restarting), removed again when patches.enabled is false.
The tools come with the packages step, bingo-host-patch.timer with the timers step (which runs
after this one, so the timer never fires before its tools are configured); `bingo-host patch`
(patches.py) is what the timer runs."""

from __future__ import annotations

NAME = "patches"


def converge(ctx) -> str:
    for template, path in ctx.platform.patch_config:
        mf = ctx.managed(template)
        if mf:
            ctx.ensure_file(mf)
        else:
            ctx.remove_file(path)
    if not ctx.cfg.patches.enabled:
        return "patches disabled"
    return f"security updates only ({len(ctx.platform.patch_config)} config files)"
