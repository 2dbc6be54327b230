"""What 'auto' sizes to, at each boundary: the values land in unit files and my.cnf as integers
(a float would render as "768.0M", which systemd and MariaDB refuse), so every case checks the
type too."""

from __future__ import annotations

import pytest

from bingo_host import sizing

MIB = 1024 * 1024
GIB = 1024 * MIB


def exactly(value, expected: int) -> bool:
    return type(value) is int and value == expected


@pytest.mark.parametrize("mem, cpus, expected", [
    (512 * MIB, 2, 2),            # a t3a.nano: one per 256 MiB
    (256 * MIB, 2, 2),            # never fewer than 2
    (1024 * MIB, 8, 4),           # RAM is the bound: exactly 4 x 256 MiB
    (1024 * MIB - 1, 8, 3),       # a byte short of the 4th
    (1280 * MIB - 1, 8, 4),       # whole workers only
    (4 * GIB, 2, 4),              # CPUs are the bound: two per CPU
    (64 * GIB, 3, 6),
])
def test_uwsgi_processes(mem, cpus, expected):
    assert exactly(sizing.uwsgi_processes(mem, cpus), expected)


@pytest.mark.parametrize("somaxconn, expected", [(4096, 1024), (1024, 1024), (1023, 1023), (128, 128)])
def test_uwsgi_listen_stays_within_the_kernels_cap(somaxconn, expected):
    assert exactly(sizing.uwsgi_listen(somaxconn), expected)


@pytest.mark.parametrize("mem, expected", [
    (512 * MIB, 1024), (2 * GIB, 1024), (2 * GIB + 1, 2048), (3 * GIB, 2048), (64 * GIB, 2048)])
def test_swap_mib_is_1g_up_to_2g_of_ram_then_2g(mem, expected):
    assert exactly(sizing.swap_mib(mem), expected)


@pytest.mark.parametrize("mem, expected", [
    (128 * MIB, 64),              # a quarter is 32: the floor
    (256 * MIB, 64),              # a quarter is exactly the floor
    (272 * MIB, 64),              # 68 rounds down to a 16 MiB step
    (320 * MIB, 80),
    (1084 * MIB, 256),            # 271 -> 256
    (16 * GIB, 4096),             # exactly the cap
    (17 * GIB, 4096),             # above it
])
def test_innodb_buffer_pool_is_a_quarter_in_16m_steps_between_64m_and_4g(mem, expected):
    assert exactly(sizing.innodb_buffer_pool_mib(mem), expected)


@pytest.mark.parametrize("processes, expected", [(1, 30), (5, 30), (6, 34), (10, 50), (64, 266)])
def test_mariadb_max_connections_has_room_beside_every_worker(processes, expected):
    assert exactly(sizing.mariadb_max_connections(processes), expected)


@pytest.mark.parametrize("mem, expected", [(512 * MIB, True), (GIB - 1, True), (GIB, False), (4 * GIB, False)])
def test_small_host_is_below_1g(mem, expected):
    assert sizing.small_host(mem) is expected


@pytest.mark.parametrize("mem, high, top", [
    (GIB, 512, 768),
    (GIB + 3, 512, 768),          # not a whole MiB: still whole MiB out
    (512 * MIB + 2 * MIB - 1, 256, 385),
    (7 * MIB, 3, 5),
])
def test_a_builds_memory_is_throttled_above_half_and_capped_at_three_quarters(mem, high, top):
    assert exactly(sizing.build_memory_high_mib(mem), high)
    assert exactly(sizing.build_memory_max_mib(mem), top)
