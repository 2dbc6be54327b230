"""What 'auto' means, from the host's memory and CPUs (a t3a.nano has 0.5 GiB and 2 vCPUs); and
for a preview, the memory and CPUs of another machine (--memory, --cpus, --instance-type)."""

from __future__ import annotations

import difflib
import re

from .errors import ConfigError

MIB = 1024 * 1024
GIB = 1024 * MIB


def uwsgi_processes(mem_bytes: int, cpus: int) -> int:
    """Two workers per CPU, but no more than one per 256 MiB of RAM, and at least 2."""
    return max(2, min(2 * cpus, mem_bytes // (256 * MIB)))


def uwsgi_listen(somaxconn: int) -> int:
    """The app socket's listen queue: 1024 (within the kernel's cap). A game start sends every
    player's request at once; uWSGI's default queue of 100 refuses the connections past it and
    nginx answers them 502 (measured: 44 of a burst of 150 API requests). 1024 requests at
    ~1 ms of CPU each wait well under a second on 2 CPUs instead."""
    return min(1024, somaxconn)


def swap_mib(mem_bytes: int) -> int:
    """1 GiB up to 2 GiB of RAM (the old template gave a nano 1 GiB), 2 GiB above."""
    return 1024 if mem_bytes <= 2 * GIB else 2048


def innodb_buffer_pool_mib(mem_bytes: int) -> int:
    """A quarter of RAM, between 64 MiB and 4 GiB, in 16 MiB steps."""
    quarter = mem_bytes // 4 // MIB // 16 * 16
    return max(64, min(4096, quarter))


def mariadb_max_connections(processes: int) -> int:
    """Every uWSGI worker, plus room for admins, backups and a deploy running beside them."""
    return max(30, processes * 4 + 10)


def small_host(mem_bytes: int) -> bool:
    """Below 1 GiB, features that cost memory and are not needed (performance_schema) are off."""
    return mem_bytes < GIB


def build_memory_high_mib(mem_bytes: int) -> int:
    """A deployment's build (pip compiling mysqlclient) is throttled above half of RAM..."""
    return mem_bytes // 2 // MIB


def build_memory_max_mib(mem_bytes: int) -> int:
    """...and never holds more than three quarters (the rest swaps): serving keeps its memory."""
    return mem_bytes * 3 // 4 // MIB


# -- the machine 'auto' is sized for when it is not this one (render, config check) --

# Memory (GiB, nominal: the host sees a little less, a t3a.nano ~461 MiB of 512) and vCPUs.
_BURSTABLE = {"nano": (0.5, 2), "micro": (1, 2), "small": (2, 2), "medium": (4, 2), "large": (8, 2),
              "xlarge": (16, 4), "2xlarge": (32, 8)}
_GENERAL = {"large": (8, 2), "xlarge": (16, 4), "2xlarge": (32, 8), "4xlarge": (64, 16)}
INSTANCE_TYPES = {f"{family}.{size}": (int(gib * GIB), cpus)
                  for families, sizes in ((("t3", "t3a", "t4g"), _BURSTABLE),
                                          (("m6i", "m6a", "m6g", "m7i", "m7a", "m7g"), _GENERAL))
                  for family in families for size, (gib, cpus) in sizes.items()}

MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([MG])(?:i?B)?", re.IGNORECASE)
MEMORY_RANGE = (128 * MIB, 4096 * GIB)
MAX_CPUS = 448


def memory_bytes(text: str) -> int:
    """--memory: a size such as 512M, 0.5G or 2GiB (binary units), in bytes."""
    m = MEMORY.fullmatch(text.strip())
    size = m and int(float(m.group(1)) * (GIB if m.group(2).upper() == "G" else MIB))
    if not size or not MEMORY_RANGE[0] <= size <= MEMORY_RANGE[1]:
        raise ConfigError("--memory", f"must be a size between 128M and 4096G such as 512M or 1G "
                                      f"(got {text[:40]!r})")
    return size


def cpu_count(text: str) -> int:
    """--cpus: a whole number of CPUs."""
    if not text.strip().isdecimal() or not 1 <= int(text) <= MAX_CPUS:
        raise ConfigError("--cpus", f"must be a whole number between 1 and {MAX_CPUS} (got {text[:40]!r})")
    return int(text)


def instance_type(name: str) -> tuple[int, int]:
    """--instance-type: (memory in bytes, CPUs) of a common EC2 type."""
    if name in INSTANCE_TYPES:
        return INSTANCE_TYPES[name]
    close = difflib.get_close_matches(name, INSTANCE_TYPES)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError("--instance-type", f"{name[:40]!r} is not in the table{hint} (t3, t3a and t4g "
                                         "nano to 2xlarge; m6i, m6a, m6g, m7i, m7a and m7g large to "
                                         "4xlarge); else give --memory and --cpus")


def machine(memory: str | None, cpus: str | None, itype: str | None) -> tuple[int | None, int | None]:
    """(memory in bytes, CPUs) of the machine the options describe, None for what they leave to
    this one; --instance-type names both, so it goes with neither of the others."""
    if itype is not None:
        if memory is not None or cpus is not None:
            raise ConfigError("--instance-type", "names the memory and CPUs: give it or --memory "
                                                 "and --cpus, not both")
        return instance_type(itype)
    return (None if memory is None else memory_bytes(memory),
            None if cpus is None else cpu_count(cpus))
