"""What 'auto' sizes to, at each boundary: the values land in unit files and my.cnf as integers
(a float would render as "768.0M", which systemd and MariaDB refuse), so every case checks the
type too."""

from __future__ import annotations

import pytest

from bingo_host import sizing
from bingo_host.errors import ConfigError

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


# -- the machine a preview sizes 'auto' for (render and config check: --memory, --cpus, --instance-type) --

def refused(call, option: str) -> str:
    """The reason call gives, after checking that it names the option."""
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.field == option
    return info.value.reason


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 * MIB), ("1G", GIB), ("0.5G", 512 * MIB), (" 2GiB ", 2 * GIB), ("1536mb", 1536 * MIB),
    ("128M", 128 * MIB), ("4096G", 4096 * GIB), ("1.5g", 1536 * MIB), ("768MiB", 768 * MIB)])
def test_memory_bytes(text, expected):
    assert exactly(sizing.memory_bytes(text), expected)


@pytest.mark.parametrize("text, got", [
    ("127M", "'127M'"), ("4097G", "'4097G'"), ("0G", "'0G'"), ("12", "'12'"), ("1T", "'1T'"), ("", "''"),
    ("1.G", "'1.G'"), ("G", "'G'"), ("x512M", "'x512M'"), ("512Mx", "'512Mx'"),
    ("9" * 50, "'" + "9" * 40 + "'")])
def test_memory_bytes_refused(text, got):
    assert refused(lambda: sizing.memory_bytes(text), "--memory") == \
        f"must be a size between 128M and 4096G such as 512M or 1G (got {got})"


@pytest.mark.parametrize("text, expected", [("1", 1), ("2", 2), (" 8 ", 8), ("448", 448)])
def test_cpu_count(text, expected):
    assert exactly(sizing.cpu_count(text), expected)


@pytest.mark.parametrize("text", ["0", "449", "-1", "1.5", "two", "", "²", "1" * 45])
def test_cpu_count_refused(text):
    assert refused(lambda: sizing.cpu_count(text), "--cpus") == \
        f"must be a whole number between 1 and 448 (got {text[:40]!r})"


@pytest.mark.parametrize("name, gib, cpus", [
    ("t3a.nano", 0.5, 2), ("t3.micro", 1, 2), ("t4g.small", 2, 2), ("t3a.medium", 4, 2),
    ("t3.large", 8, 2), ("t4g.xlarge", 16, 4), ("t3a.2xlarge", 32, 8), ("m6i.large", 8, 2),
    ("m7g.xlarge", 16, 4), ("m6a.2xlarge", 32, 8), ("m7i.4xlarge", 64, 16), ("m6g.large", 8, 2),
    ("m7a.large", 8, 2)])
def test_instance_types(name, gib, cpus):
    mem, count = sizing.instance_type(name)
    assert exactly(mem, int(gib * GIB)) and exactly(count, cpus)


def test_the_instance_table_has_the_common_types_and_no_others():
    assert len(sizing.INSTANCE_TYPES) == 3 * 7 + 6 * 4
    assert "m6i.nano" not in sizing.INSTANCE_TYPES and "t3.4xlarge" not in sizing.INSTANCE_TYPES


@pytest.mark.parametrize("name, hint", [
    ("t3a.nnao", "; did you mean t3a.nano?"), ("T3A.NANO", ""), ("c7g.large", "; did you mean m7g.large?"),
    ("zzz", ""), ("x" * 60, "")])
def test_an_unknown_instance_type(name, hint):
    assert refused(lambda: sizing.instance_type(name), "--instance-type") == (
        f"{name[:40]!r} is not in the table{hint} (t3, t3a and t4g nano to 2xlarge; m6i, m6a, m6g, "
        "m7i, m7a and m7g large to 4xlarge); else give --memory and --cpus")


@pytest.mark.parametrize("args, expected", [
    ((None, None, None), (None, None)), (("1G", None, None), (GIB, None)), ((None, "4", None), (None, 4)),
    (("2G", "3", None), (2 * GIB, 3)), ((None, None, "t3a.nano"), (512 * MIB, 2))])
def test_machine(args, expected):
    assert sizing.machine(*args) == expected


@pytest.mark.parametrize("args", [("1G", None, "t3a.nano"), (None, "2", "t3a.nano"), ("1G", "2", "t3.nano")])
def test_an_instance_type_goes_with_neither_memory_nor_cpus(args):
    assert refused(lambda: sizing.machine(*args), "--instance-type") == \
        "names the memory and CPUs: give it or --memory and --cpus, not both"


def test_machine_checks_each_value():
    assert refused(lambda: sizing.machine("1X", None, None), "--memory").startswith("must be a size")
    assert refused(lambda: sizing.machine(None, "0", None), "--cpus").startswith("must be a whole number")
    assert refused(lambda: sizing.machine(None, None, "t9.nano"), "--instance-type").startswith("'t9.nano'")
