"""Memory caps on a real systemd: one test host under a 512 MiB cap (a t3a.nano; a v1 memory
cgroup around its systemd). Before it is bootstrapped, config check, render and status must size
and report from the cap (facts/memory.py). Then the boot-time resize: bootstrapped under
512 MiB, rebooted on the same root under 1 GiB (a stop/start onto another type), then once more
under the same 1 GiB. bingo-host-resize.service must apply the new sizing at the first of those
boots (uWSGI's workers, MariaDB's buffer pool, in the files and in the running services) and
change nothing at the second, which only reads and exits. A stand-in release (an application.py
that answers any request) gives uWSGI a vassal to size without a deployment's build.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from bingo_host.facts import memory
from tests.conftest import BIN, CONFIG, host_config

MIB = 1024 * 1024
UNIT = "bingo-host-resize.service"
ROOT = "/var/www/music-bingo"
CNF = "/etc/mysql/mariadb.conf.d/zz-bingo-host.cnf"
STAND_IN = "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok\\n']\n"


def serving_vassal(host) -> str:
    target = host.run(["readlink", "/run/bingo-uwsgi/music-bingo.sock"]).stdout.strip()
    return host.read_file(f"/etc/bingo-host/vassals/{target.removesuffix('.sock')}.ini")


def sizing(host) -> dict:
    """What the host runs with: the rendered values and the running services' own."""
    vassal, cnf = serving_vassal(host), host.read_file(CNF)
    workers = host.run_shell("app=$(ps -u music-bingo -o pid= | tr -d ' '); n=0; for p in $app; do "
                             "pp=$(ps -o ppid= -p $p | tr -d ' '); case \" $(echo $app) \" in "
                             "*\" $pp \"*) n=$((n+1));; esac; done; echo $n").stdout.strip()
    pool = host.run(["mariadb", "-N", "-e", "SELECT @@innodb_buffer_pool_size"]).stdout.strip()
    return {"processes": next(line for line in vassal.splitlines() if line.startswith("processes = ")),
            "pool": next(line for line in cnf.splitlines() if line.startswith("innodb_buffer_pool_size")),
            "performance_schema_off": "performance_schema = OFF" in cnf,
            "workers": int(workers), "running_pool_mib": int(pool) // MIB,
            "recorded": json.loads(host.read_file("/var/lib/bingo-host/sizing.json"))}


def managed_files(host) -> dict[str, str]:
    """sha256 and mtime of every file bingo-host manages that sizing reaches."""
    out = host.run_shell("sha256sum /etc/bingo-host/vassals/*.ini /etc/mysql/mariadb.conf.d/zz-bingo-host.cnf "
                         "/etc/systemd/system/bingo-*.service /var/lib/bingo-host/sizing.json; "
                         "stat -c '%n %Y' /etc/bingo-host/vassals/*.ini /etc/mysql/mariadb.conf.d/zz-bingo-host.cnf "
                         "/var/lib/bingo-host/sizing.json").stdout
    return {hashlib.sha256(line.encode()).hexdigest()[:12]: line for line in out.splitlines()}


def this_boots_run(host) -> tuple[str, str, float]:
    """The resize unit's result, what its run of this boot logged, and how long it took (ms).
    By invocation: a test host's boots share the machine's boot id, so `journalctl -b` is all."""
    show = dict(line.split("=", 1) for line in host.run(
        ["systemctl", "show", UNIT, "-p", "Result,ExecMainStartTimestampMonotonic,"
         "ExecMainExitTimestampMonotonic,ExecMainStatus,InvocationID"]).stdout.splitlines())
    journal = host.run(["journalctl", f"_SYSTEMD_INVOCATION_ID={show['InvocationID']}", "--no-pager",
                        "-o", "cat"]).stdout
    took = (int(show["ExecMainExitTimestampMonotonic"]) - int(show["ExecMainStartTimestampMonotonic"])) / 1000
    return f"{show['Result']} {show['ExecMainStatus']}", journal, took


@pytest.fixture(scope="module")
def capped(host_pool):
    host = host_pool.fresh(memory_mb=512)
    try:
        host.volume = host.attach_volume(size_mb=256)
        yield host
    finally:
        host.shutdown()


def test_capped_host_sizes_and_reports_from_its_cap(capped):
    """Before any bootstrap: config check, render and status take the cgroup's 512 MiB."""
    capped.put_file(CONFIG, host_config(capped.volume.device, app={"processes": "auto"}, swap={"size": "auto"}),
                    mode=0o600)
    cgroup = capped.memory_cgroup
    assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(512 * MIB)
    assert (cgroup / "memory.use_hierarchy").read_text().strip() == "1"
    pid1 = memory.parse_proc_cgroup(capped.read_file("/proc/1/cgroup"))
    assert pid1 and f"/sys/fs/cgroup/memory{pid1[1]}".startswith(str(cgroup)), pid1

    effective = json.loads(capped.run([BIN, "config", "check", "--json"]).stdout)
    assert effective["app"]["processes"] == 2 and effective["swap"]["size"] == "1G", effective
    capped.run([BIN, "render", "--out", "/tmp/preview"])
    cnf = capped.run_shell("cat /tmp/preview/etc/mysql/mariadb.conf.d/zz-bingo-host.cnf").stdout
    assert "innodb_buffer_pool_size = 128M" in cnf and "performance_schema = OFF" in cnf, cnf
    assert "max_connections = 30" in cnf, cnf
    report = json.loads(capped.run([BIN, "status", "--json"], check=False).stdout)
    assert report["memory"]["total_bytes"] == 512 * MIB and report["memory"]["limit"] == "cgroup"
    text = capped.run([BIN, "status"], check=False).stdout
    assert "512.0 MiB (cgroup limit)" in text, text


def test_a_new_memory_cap_is_followed_at_boot_and_an_unchanged_boot_changes_nothing(capped):
    host = capped
    host.put_file(CONFIG, host_config(host.volume.device, app={"processes": "auto"}), mode=0o600)
    first = host.run([BIN, "bootstrap"], check=False, timeout=1800)
    assert first.returncode == 0, first.stdout + first.stderr
    host.put_file(f"{ROOT}/releases/stand-in/application.py", STAND_IN)
    host.run(["ln", "-sfn", f"{ROOT}/releases/stand-in", f"{ROOT}/current"])
    again = host.run([BIN, "bootstrap"], check=False, timeout=600)  # the app starts on a slot
    assert again.returncode == 0, again.stdout + again.stderr
    assert host.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
    nano = sizing(host)
    assert nano == {"processes": "processes = 2", "pool": "innodb_buffer_pool_size = 128M",
                    "performance_schema_off": True, "workers": 2, "running_pool_mib": 128,
                    "recorded": {"mem_bytes": 512 * MIB, "cpus": nano["recorded"]["cpus"]}}, nano

    host.reboot(memory_mb=1024)
    resize_boot = host.timings["reboot_boot"]
    result, journal, resize_ms = this_boots_run(host)
    assert result == "success 0", journal
    assert "(memory 512 -> 1024 MiB): running bootstrap" in journal, journal
    assert "bootstrap: converged" in journal, journal
    small = sizing(host)
    assert small == {"processes": "processes = 4", "pool": "innodb_buffer_pool_size = 256M",
                     "performance_schema_off": False, "workers": 4, "running_pool_mib": 256,
                     "recorded": {"mem_bytes": 1024 * MIB, "cpus": nano["recorded"]["cpus"]}}, small
    before = managed_files(host)

    host.reboot()  # the same 1 GiB
    unchanged_boot = host.timings["reboot_boot"]
    result, journal, unchanged_ms = this_boots_run(host)
    assert result == "success 0", journal
    assert "resize: sized for 1024 MiB and" in journal and "nothing to do" in journal, journal
    assert "bootstrap" not in journal, journal
    assert managed_files(host) == before
    print(f"\nresize unit: {resize_ms:.0f} ms resizing, {unchanged_ms:.0f} ms unchanged; boot until "
          f"running: {resize_boot:.1f} s resizing, {unchanged_boot:.1f} s unchanged")


def test_capped_host_cgroup_is_removed_at_shutdown(capped):
    cgroup = capped.memory_cgroup
    capped.shutdown()
    assert not os.path.exists(cgroup)
