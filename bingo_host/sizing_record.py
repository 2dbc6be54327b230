"""What 'auto' sizing was computed from (usable memory and CPUs), recorded by the last bootstrap
that converged, and whether this host still has it. bingo-host-resize.service asks at every
boot: a stop/start onto another instance type changes both, and only bootstrap resizes. One
reader of the inputs (``current``) serves resolve's host facts and the boot's comparison alike,
so the two can never disagree about what changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .facts import memory
from .state import SIZING_FILE, read_json, write_json

MIB = 1024 * 1024


@dataclass(frozen=True)
class Inputs:
    mem_bytes: int  # memory.read().usable_bytes: RAM, or the cgroup's limit when smaller
    cpus: int

    def describe(self) -> str:
        return f"{self.mem_bytes / MIB:.0f} MiB and {self.cpus} CPU{'s' * (self.cpus != 1)}"


def current(root: str = "/") -> Inputs:
    """This host's sizing inputs now (root: a fake /proc + /sys tree in tests)."""
    return Inputs(memory.read(root).usable_bytes, os.cpu_count() or 1)


def recorded(path: str = SIZING_FILE) -> Inputs | None:
    """What the last converged bootstrap sized for; None when nothing valid is recorded."""
    data = read_json(path) or {}
    mem, cpus = data.get("mem_bytes"), data.get("cpus")
    if not all(type(v) is int and v > 0 for v in (mem, cpus)):
        return None
    return Inputs(mem, cpus)


def why_resize(was: Inputs | None, now: Inputs) -> str | None:
    """Why bootstrap must size this host again (None: it is sized for what it has)."""
    if was is None:
        return "no valid record of what the sizing was computed from"
    changed = []
    if was.mem_bytes != now.mem_bytes:
        changed.append(f"memory {was.mem_bytes / MIB:.0f} -> {now.mem_bytes / MIB:.0f} MiB")
    if was.cpus != now.cpus:
        changed.append(f"CPUs {was.cpus} -> {now.cpus}")
    return ", ".join(changed) or None


def record(inputs: Inputs, path: str = SIZING_FILE) -> None:
    write_json(path, {"mem_bytes": inputs.mem_bytes, "cpus": inputs.cpus})
