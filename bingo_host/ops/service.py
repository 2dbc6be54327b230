"""systemd operations: systemctl verbs and daemon-reload (unit states are facts/systemd.py)."""

from __future__ import annotations


from .. import subp
from ..facts import systemd
from ..facts.systemd import UnitState


# What writing a managed file owes (its on_change), named once: the context records it as pending
# when it writes the file, and the step that owns the service pays it.
RELOAD_APP = "reload app"
RELOAD_NGINX = "reload nginx"
DAEMON_RELOAD = "daemon-reload"


def restart(service: str) -> str:
    return f"restart {service}"


def systemctl(*args: str, timeout: float = 180) -> subp.Result:
    return subp.run(["systemctl", *args], timeout=timeout)


def daemon_reload() -> None:
    systemctl("daemon-reload")


def ensure_running(ctx, unit: str, owed: str, verb: str = "restart", timeout: float = 180,
                   before_start=None) -> UnitState:
    """Enable and start `unit`, or `verb` (restart/reload) it when the pending action `owed`
    (e.g. "restart mariadb", left by a file change) was not carried out yet; starting pays it
    too. ``before_start`` runs first when the unit is started or `verb`ed (e.g. `nginx -t`)."""
    state = ctx.fact(systemd.states, unit)[unit]
    if not state.is_enabled:
        ctx.change(f"enable {unit}", lambda: systemctl("enable", unit))
    due = "start" if not state.running else verb if ctx.pending(owed) else None
    if due:
        def carry_out():
            if before_start:
                before_start()
            systemctl(due, unit, timeout=timeout)

        ctx.change(f"{due} {unit}", carry_out)
        ctx.done(owed)
    return state
