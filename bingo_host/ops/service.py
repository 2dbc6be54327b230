"""systemd operations: systemctl verbs and daemon-reload (unit states are facts/systemd.py)."""

from __future__ import annotations

from .. import subp
from ..facts import systemd
from ..facts.systemd import UnitState


def systemctl(*args: str, timeout: float = 180) -> subp.Result:
    return subp.run(["systemctl", *args], timeout=timeout)


def daemon_reload() -> None:
    systemctl("daemon-reload")


def ensure_running(ctx, unit: str, owed: str, verb: str = "restart", timeout: float = 180,
                   before_start=None) -> UnitState:
    """Enable and start `unit`, or `verb` (restart/reload) it when the pending action `owed`
    (e.g. "restart mariadb", left by a file change) was not carried out yet; starting pays it
    too. ``before_start`` runs first when the unit is started or `verb`ed (e.g. `nginx -t`)."""
    state = systemd.states(unit)[unit]
    if not state.is_enabled:
        ctx.change(f"enable {unit}", lambda: systemctl("enable", unit))
    due = "start" if not state.running else verb if ctx.pending(owed) else None
    if due:
        if before_start and not ctx.dry_run:
            before_start()
        ctx.change(f"{due} {unit}", lambda: systemctl(due, unit, timeout=timeout))
        ctx.done(owed)
    return state
