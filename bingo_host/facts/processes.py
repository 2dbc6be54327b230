"""A process's identity from /proc: its start time, which with its pid tells a live hook or
`bingo-host deploy` from a pid the kernel reused (deploy/record.py), and how long this process
has run (deploy/hooks.py). Computed as psutil's create_time is on Linux (start ticks / CLK_TCK
plus /proc/stat's btime), so records written with psutil compare equal; read here because
importing psutil cost every `bingo-host hook` ~7 ms for these two numbers."""

from __future__ import annotations

import os


def _stat(pid: int | str) -> list[bytes]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and parentheses):
    [0] is the state, [19] the start time in clock ticks since boot."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()


def _boot_time() -> float:
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def start_time(pid: int) -> float:
    """When pid started, in seconds since the epoch (ProcessLookupError: no such process)."""
    try:
        ticks = int(_stat(pid)[19])
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    return ticks / os.sysconf("SC_CLK_TCK") + _boot_time()


def is_running(pid: int, start: float) -> bool:
    """pid is the process that started at `start` (within a second) and is not a zombie (a killed
    process its parent has not reaped yet drives nothing)."""
    try:
        fields = _stat(pid)
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK") + _boot_time()
    except (OSError, ValueError, IndexError):
        return False
    return abs(started - start) < 1.0 and fields[0] != b"Z"


def seconds_running() -> float:
    """How long this process has run: its start and the uptime, both counted from boot (the
    epoch boot time is whole seconds only). 0.0 when /proc does not say."""
    try:
        ticks = int(_stat("self")[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
