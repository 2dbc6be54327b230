"""What 'auto' means, from the host's memory and CPUs (a t3a.nano has 0.5 GiB and 2 vCPUs)."""

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
