"""The memory this host may really use: the smaller of physical RAM and the memory limit of the
cgroup the host runs in (cgroup v1 `memory.limit_in_bytes` or v2 `memory.max`, from PID 1's
cgroup up to the root). On EC2 that is RAM; in an LXC/LXD container or a capped test host it
is the cap, and sizing 'auto' from RAM there would overcommit it. Sizing and `status` both read
this, so they agree. Every reader takes `root` (a fake /proc + /sys tree in the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

UNLIMITED_FROM = 1 << 62  # v1 writes "no limit" as ~2**63 rounded down to a page; v2 writes "max"


@dataclass(frozen=True)
class Memory:
    ram_bytes: int
    limit_bytes: int | None = None  # the tightest cgroup limit above PID 1; None: no limit
    cgroup_dir: str | None = None   # the cgroup that sets it: its usage is the host's
    cgroup_version: int | None = None

    @property
    def capped(self) -> bool:
        """True when the cgroup limit, not RAM, is what the host may use."""
        return self.limit_bytes is not None and self.limit_bytes < self.ram_bytes

    @property
    def usable_bytes(self) -> int:
        return self.limit_bytes if self.capped else self.ram_bytes


def parse_meminfo_total(text: str) -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemTotal line in /proc/meminfo")


def parse_proc_cgroup(text: str) -> tuple[int, str] | None:
    """(version, path) of the memory cgroup in a /proc/PID/cgroup: the v1 line naming the
    memory controller (`4:memory:/path`, also `4:cpu,memory:/path`) wins over the v2 line
    (`0::/path`, which holds memory only on a unified hierarchy: the caller checks)."""
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            return 1, parts[2]
        if parts[0] == "0" and parts[1] == "":
            unified = (2, parts[2])
    return unified


def parse_limit(text: str) -> int | None:
    """A memory limit file's value in bytes; None for "max" or a value meaning no limit."""
    value = text.strip()
    if not value or value == "max":
        return None
    number = int(value)
    return None if number >= UNLIMITED_FROM else number


def ancestors(path: str) -> list[str]:
    """'/a/b' -> ['/a/b', '/a', '/']: the cgroup and every cgroup above it."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _hierarchy(root: str) -> tuple[int, str, str] | None:
    """(version, mount directory, PID 1's cgroup path) of the memory controller, if any."""
    found = parse_proc_cgroup(_read(os.path.join(root, "proc/1/cgroup")) or "")
    if found is None:
        return None
    version, path = found
    if version == 1:
        return 1, os.path.join(root, "sys/fs/cgroup/memory"), path
    controllers = _read(os.path.join(root, "sys/fs/cgroup/cgroup.controllers")) or ""
    if "memory" not in controllers.split():
        return None  # hybrid: the v2 hierarchy has no memory controller
    return 2, os.path.join(root, "sys/fs/cgroup"), path


def read(root: str = "/") -> Memory:
    """RAM, and the tightest memory limit from PID 1's cgroup up (cgroups the mount does not
    show, e.g. above a container's own, are skipped; so are unreadable or junk files)."""
    ram = parse_meminfo_total(_read(os.path.join(root, "proc/meminfo")) or "")
    found = _hierarchy(root)
    if found is None:
        return Memory(ram)
    version, mount, path = found
    name = "memory.limit_in_bytes" if version == 1 else "memory.max"
    best = best_dir = None
    for cgroup in ancestors(path):
        directory = os.path.join(mount, cgroup.lstrip("/")).rstrip("/")
        try:
            limit = parse_limit(_read(os.path.join(directory, name)) or "")
        except ValueError:
            continue
        if limit is not None and (best is None or limit < best):
            best, best_dir = limit, directory
    return Memory(ram, best, best_dir, version if best is not None else None)


def parse_stat(text: str) -> dict[str, int]:
    """A cgroup's memory.stat as {key: value}."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def cgroup_used_bytes(memory: Memory) -> int | None:
    """What the limiting cgroup uses and cannot simply drop: its usage less inactive file cache
    (the kernel reclaims that first), as `docker stats` and the kubelet count it."""
    if memory.cgroup_dir is None:
        return None
    v1 = memory.cgroup_version == 1
    usage = _read(os.path.join(memory.cgroup_dir, "memory.usage_in_bytes" if v1 else "memory.current"))
    stat = parse_stat(_read(os.path.join(memory.cgroup_dir, "memory.stat")) or "")
    if usage is None or not usage.strip().isdigit():
        return None
    inactive = stat.get("total_inactive_file" if v1 else "inactive_file", 0)
    return max(0, int(usage) - inactive)
