"""The memory a host may use: RAM, or its cgroup's limit when smaller (facts/memory.py), and what
'auto' and `status` make of it. Unit tests read fake /proc + /sys trees; on a test host capped at
512 MiB (a v1 memory cgroup around its systemd), tests/test_resize_host.py checks what bingo-host
sizes and reports there before it bootstraps it, and that the harness removes the cgroup.
"""

from __future__ import annotations

from pathlib import Path

from bingo_host import sizing
from bingo_host.facts import memory
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import resolve
from bingo_host.status.checks import check_memory
from bingo_host.status.report import Report

MIB = 1024 * 1024
UNLIMITED_V1 = "9223372036854771712\n"


def fake_host(tmp_path: Path, ram_mib: int, proc_cgroup: str, files: dict[str, str]) -> str:
    """A root with /proc/meminfo, /proc/1/cgroup and the given files under sys/fs/cgroup."""
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/meminfo").write_text(f"MemTotal:       {ram_mib * 1024} kB\nMemFree: 1 kB\n")
    (tmp_path / "proc/1/cgroup").write_text(proc_cgroup)
    for rel, text in files.items():
        path = tmp_path / "sys/fs/cgroup" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


V1_CGROUP = ("12:pids:/\n4:memory:/lxc/web/init.scope\n1:name=systemd:/init.scope\n0::/init.scope\n")


def test_parsers():
    assert memory.parse_meminfo_total("MemTotal:  460000 kB\n") == 460000 * 1024
    assert memory.parse_proc_cgroup(V1_CGROUP) == (1, "/lxc/web/init.scope")
    assert memory.parse_proc_cgroup("7:cpu,memory:/a\n") == (1, "/a")
    assert memory.parse_proc_cgroup("0::/user.slice/x.scope\n") == (2, "/user.slice/x.scope")
    assert memory.parse_proc_cgroup("3:cpu:/\n") is None
    assert memory.parse_limit("536870912\n") == 512 * MIB
    assert memory.parse_limit("max\n") is None
    assert memory.parse_limit(UNLIMITED_V1) is None
    assert memory.ancestors("/a/b") == ["/a/b", "/a", "/"]
    assert memory.ancestors("/") == ["/"]


def test_no_cgroup_limit_is_ram(tmp_path):
    root = fake_host(tmp_path, 2048, V1_CGROUP, {"memory/memory.limit_in_bytes": UNLIMITED_V1,
                                                 "memory/lxc/memory.limit_in_bytes": UNLIMITED_V1})
    mem = memory.read(root)
    assert (mem.usable_bytes, mem.capped, mem.limit_bytes) == (2048 * MIB, False, None)


def test_v1_limit_walked_up_from_pid1(tmp_path):
    # The limit is on an ancestor of PID 1's cgroup; a looser one above it and none below.
    root = fake_host(tmp_path, 24000, V1_CGROUP, {
        "memory/memory.limit_in_bytes": UNLIMITED_V1,
        "memory/lxc/memory.limit_in_bytes": str(4096 * MIB),
        "memory/lxc/web/memory.limit_in_bytes": str(512 * MIB),
        "memory/lxc/web/init.scope/memory.limit_in_bytes": UNLIMITED_V1,
        "memory/lxc/web/memory.usage_in_bytes": str(300 * MIB),
        "memory/lxc/web/memory.stat": f"cache 1\ntotal_inactive_file {100 * MIB}\n",
        "unified/cgroup.controllers": "",
    })
    mem = memory.read(root)
    assert mem.capped and mem.usable_bytes == 512 * MIB
    assert mem.cgroup_dir == f"{root}/sys/fs/cgroup/memory/lxc/web"
    assert memory.cgroup_used_bytes(mem) == 200 * MIB


def test_v2_memory_max(tmp_path):
    root = fake_host(tmp_path, 8192, "0::/machine.slice/host.scope\n", {
        "cgroup.controllers": "cpuset cpu io memory pids\n",
        "machine.slice/memory.max": "max\n",
        "machine.slice/host.scope/memory.max": f"{1024 * MIB}\n",
        "machine.slice/host.scope/memory.current": f"{600 * MIB}\n",
        "machine.slice/host.scope/memory.stat": f"anon 1\ninactive_file {50 * MIB}\n",
    })
    mem = memory.read(root)
    assert (mem.usable_bytes, mem.cgroup_version) == (1024 * MIB, 2)
    assert memory.cgroup_used_bytes(mem) == 550 * MIB


def test_limit_above_ram_and_junk_are_ignored(tmp_path):
    root = fake_host(tmp_path, 1024, V1_CGROUP, {
        "memory/lxc/memory.limit_in_bytes": "garbage\n",
        "memory/lxc/web/memory.limit_in_bytes": str(4096 * MIB),
    })
    mem = memory.read(root)
    assert not mem.capped and mem.usable_bytes == 1024 * MIB


def test_hybrid_v2_without_memory_controller_is_ram(tmp_path):
    root = fake_host(tmp_path, 1024, "0::/init.scope\n", {"cgroup.controllers": "pids\n",
                                                          "init.scope/memory.max": f"{64 * MIB}\n"})
    assert memory.read(root).usable_bytes == 1024 * MIB


def test_auto_sizing_for_a_nano():
    """What 'auto' makes of 512 MiB and 2 CPUs (a t3a.nano, or a host capped at 512 MiB)."""
    from bingo_host.config import Config
    from bingo_host.facts import platforms

    facts = HostFacts(mem_bytes=512 * MIB, cpus=2)
    cfg = resolve(Config(), platforms.get("debian12"), facts)
    assert (cfg.app.processes, cfg.swap.size) == (2, 1024)
    assert sizing.innodb_buffer_pool_mib(facts.mem_bytes) == 128
    assert sizing.small_host(facts.mem_bytes)
    assert sizing.mariadb_max_connections(cfg.app.processes) == 30


def test_status_reports_memory_against_the_cgroup_limit(tmp_path):
    root = fake_host(tmp_path, 24000, V1_CGROUP, {
        "memory/lxc/web/memory.limit_in_bytes": str(512 * MIB),
        "memory/lxc/web/memory.usage_in_bytes": str(384 * MIB),
        "memory/lxc/web/memory.stat": f"total_inactive_file {128 * MIB}\n",
    })
    r = Report()
    check_memory(r, root, sizing_path=str(tmp_path / "sizing.json"))
    assert r.data["memory"] == {"total_bytes": 512 * MIB, "available_bytes": 256 * MIB,
                                "used_percent": 50.0, "limit": "cgroup", "resize_due": None}
    assert not r.problems


def test_status_warns_while_the_sizing_is_for_other_memory_or_cpus(tmp_path):
    """A stop/start onto another type whose resize has not run (or failed): a warning naming
    the change and the command, until a bootstrap records the new inputs."""
    import os

    from bingo_host import sizing_record

    root = fake_host(tmp_path, 1024, "0::/\n", {})
    record = str(tmp_path / "sizing.json")
    now = sizing_record.Inputs(1024 * MIB, os.cpu_count() or 1)
    sizing_record.record(sizing_record.Inputs(512 * MIB, now.cpus), record)
    r = Report()
    check_memory(r, root, sizing_path=record)
    assert r.data["memory"]["resize_due"] == "memory 512 -> 1024 MiB"
    (problem,) = r.problems
    assert problem["severity"] == "warning" and "`bingo-host resize`" in problem["message"]
    sizing_record.record(now, record)
    r = Report()
    check_memory(r, root, sizing_path=record)
    assert r.data["memory"]["resize_due"] is None and not r.problems


def test_status_without_a_limit_reports_ram(tmp_path):
    root = fake_host(tmp_path, 1024, "0::/\n", {})
    r = Report()
    check_memory(r, root, sizing_path=str(tmp_path / "sizing.json"))
    assert r.data["memory"]["limit"] == "ram"


# -- a test host capped at 512 MiB --
