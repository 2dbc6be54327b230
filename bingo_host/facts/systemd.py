"""systemd facts: unit states from one `systemctl show` for many units; whether systemd accepts
an OnCalendar= expression."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from .. import subp
from ..errors import ConfigError

RUNNING = ("active", "reloading")  # ActiveState of a unit that is up
ENABLED = ("enabled", "enabled-runtime", "static", "alias")  # UnitFileState of one that starts at boot


@dataclass(frozen=True)
class UnitState:
    name: str
    load: str  # loaded | not-found | masked
    active: str  # active | inactive | failed | activating ...
    enabled: str  # enabled | disabled | static | masked | "" (not found)

    @property
    def running(self) -> bool:
        return self.active in RUNNING

    @property
    def is_enabled(self) -> bool:
        return self.enabled in ENABLED


def booted() -> bool:
    """systemd is PID 1 and running (sd_booted(3)'s test): transient units can be started."""
    return os.path.isdir("/run/systemd/system")


def parse_show(text: str) -> list[dict[str, str]]:
    """Parse `systemctl show -p ... UNIT...`: property blocks separated by blank lines."""
    blocks, current = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    return blocks


def states(*units: str) -> dict[str, UnitState]:
    result = subp.run(["systemctl", "show", "--no-pager",
                       "-p", "Id,LoadState,ActiveState,UnitFileState", "--", *units])
    found = {}
    for unit, block in zip(units, parse_show(result.stdout)):
        found[unit] = UnitState(unit, block.get("LoadState", ""), block.get("ActiveState", ""),
                                block.get("UnitFileState", ""))
    return found


def systemd_calendar(value: str, path: str) -> None:
    """systemd is the judge of an OnCalendar= expression: ask systemd-analyze where it exists (on
    a workstation without it, fields.schedule's character check is what holds). Called by the
    config's host checks and before a timer is written, never while a config is parsed."""
    if shutil.which("systemd-analyze") is None:
        return
    if not subp.run(["systemd-analyze", "calendar", "--", value], rcs=range(256), timeout=30).ok:
        raise ConfigError(path, f"systemd does not accept {value!r} as an OnCalendar= expression")
