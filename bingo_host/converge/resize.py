"""`bingo-host resize`, which bingo-host-resize.service runs at every boot: bootstrap again when
this host's usable memory or CPUs are not what the last converged bootstrap sized it for (a
stop/start onto another instance type), so 'auto' follows the type; otherwise nothing, and the
config is not even read. The resize step, bootstrap's last, records what a converged run sized
for; a failed run leaves the old record, so the next boot tries again."""

from __future__ import annotations

import logging
from typing import Callable

from .. import sizing_record

log = logging.getLogger(__name__)


def resize(load_config: Callable, dry_run: bool = False) -> int:
    """0 sized for this host (already, or by the bootstrap run here), 1 that bootstrap failed.
    load_config: what gives the Config, called only when bootstrap runs (the config module's
    import and the file's reading are no part of an unchanged boot)."""
    now = sizing_record.current()
    why = sizing_record.why_resize(sizing_record.recorded(), now)
    if why is None:
        log.info(f"resize: sized for {now.describe()}, which this host has: nothing to do")
        return 0
    log.info(f"resize: this host has {now.describe()} ({why}): running bootstrap")
    from . import bootstrap  # with the config: ~110 ms of imports (-X importtime) an unchanged boot skips

    return bootstrap.converge_host(load_config(), dry_run=dry_run)
