"""bingo-host-resize.service, enabled so that every boot checks this host's memory and CPUs
(see converge/resize.py), and the record of what this run sized for. The last step: the record
is written only when every step before it converged, and a run that failed part-way is tried
again at the next boot. The unit is enabled, never started here: it would run bootstrap inside
this one."""

from __future__ import annotations

from ... import layout, sizing_record
from ...facts import systemd
from ...ops import service
from ...ops.service import DAEMON_RELOAD

NAME = "resize"
UNIT = f"{layout.RESIZE_UNIT}.service"
UNITS = (UNIT,)


def converge(ctx) -> str:
    ctx.ensure_file(ctx.managed("resize.service"))  # owes DAEMON_RELOAD
    if ctx.pending(DAEMON_RELOAD):
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)
    if not ctx.fact(systemd.states, UNIT)[UNIT].is_enabled:
        ctx.change(f"enable {UNIT}", lambda: service.systemctl("enable", UNIT))
    now = sizing_record.Inputs(ctx.facts.mem_bytes, ctx.facts.cpus)
    why = sizing_record.why_resize(ctx.fact(sizing_record.recorded), now)
    if why:
        ctx.change(f"record that this run sized for {now.describe()} ({why})",
                   lambda: sizing_record.record(now))
    return f"sized for {now.describe()}; {UNIT} checks that at boot"
