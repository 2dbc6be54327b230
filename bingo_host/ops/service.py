"""systemd operations: systemctl verbs and daemon-reload (unit states are facts/systemd.py), and
the app's chain reload under the uWSGI emperor."""

from __future__ import annotations

import os

from .. import layout, subp
from . import files
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


#: A byte the uWSGI master FIFO has no command for: it only wakes the master.
FIFO_WAKE = b"\n"


def chain_reload_app(app_name: str) -> None:
    """Replace the app's uWSGI workers one at a time: `c` on the master's FIFO starts the chain
    at once; a master without one (its vassal's ini names none, or none running yet) gets
    its reload trigger touched (its creation starts a chain too) and sees it within a second."""
    if files.write_fifo(layout.app_master_fifo(app_name), b"c"):
        return
    trigger = layout.app_reload_trigger(app_name)
    if os.path.exists(trigger):
        files.touch_past(trigger, os.stat(trigger).st_mtime)
    else:
        files.write_atomic(trigger, "", 0o644, "root", "root")


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


def wake_app_master(app_name: str) -> None:
    """Wake the app's uWSGI master now: it reaps an old worker and moves a chain reload on to
    the next worker only when it wakes, by itself once a second (what a chain of n workers
    waited for, twice per worker, before). The chain's rule is the master's own: the next
    worker stops only once the new one accepts requests."""
    files.write_fifo(layout.app_master_fifo(app_name), FIFO_WAKE)
