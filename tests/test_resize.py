"""The boot-time resize (bingo-host-resize.service runs `bingo-host resize`): bootstrap again
only when the usable memory or CPUs differ from what the last converged bootstrap sized for.
Here the decision, the record and the command; tests/test_resize_host.py boots one host on two
memory caps; tests/steps/resize/ has the step's cases, tests/test_render.py the unit's."""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host import logs, sizing_record
from bingo_host.cli import main
from bingo_host.converge import bootstrap
from bingo_host.converge import resize as resize_mod
from bingo_host.sizing_record import Inputs

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent
NANO = Inputs(512 * MIB, 2)


@pytest.mark.parametrize("was, now, why", [
    (NANO, NANO, None),
    (NANO, Inputs(2048 * MIB, 2), "memory 512 -> 2048 MiB"),
    (NANO, Inputs(512 * MIB, 4), "CPUs 2 -> 4"),
    (Inputs(4096 * MIB, 4), NANO, "memory 4096 -> 512 MiB, CPUs 4 -> 2"),
    (NANO, Inputs(512 * MIB + 4096, 2), "memory 512 -> 512 MiB"),  # a kernel's few KiB more: still a run
    (None, NANO, "no valid record of what the sizing was computed from"),
])
def test_why_resize(was, now, why):
    assert sizing_record.why_resize(was, now) == why


def test_record_round_trip_and_what_is_no_record(tmp_path):
    path = str(tmp_path / "sizing.json")
    assert sizing_record.recorded(path) is None  # missing
    sizing_record.record(NANO, path)
    assert json.loads(Path(path).read_text()) == {"mem_bytes": 512 * MIB, "cpus": 2}
    assert sizing_record.recorded(path) == NANO
    for junk in ("not json", "[1, 2]", '{"mem_bytes": 536870912}', '{"mem_bytes": "512M", "cpus": 2}',
                 '{"mem_bytes": 536870912, "cpus": 0}', '{"mem_bytes": 536870912, "cpus": true}'):
        Path(path).write_text(junk)
        assert sizing_record.recorded(path) is None, junk


def test_current_reads_the_cgroup_cap_and_the_cpus(tmp_path, monkeypatch):
    """The same reads as resolve's host facts: the cgroup's limit when below RAM."""
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/meminfo").write_text(f"MemTotal: {8192 * 1024} kB\n")
    (tmp_path / "proc/1/cgroup").write_text("4:memory:/host\n")
    (tmp_path / "sys/fs/cgroup/memory/host").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory/host/memory.limit_in_bytes").write_text(f"{768 * MIB}\n")
    monkeypatch.setattr(sizing_record.os, "cpu_count", lambda: 3)
    assert sizing_record.current(str(tmp_path)) == Inputs(768 * MIB, 3)


@pytest.fixture
def host_is(monkeypatch):
    """Set what the record says and what the host has; returns the bootstrap runs made."""
    runs = []

    def set_(was, now, rc=0):
        monkeypatch.setattr(sizing_record, "recorded", lambda: was)
        monkeypatch.setattr(sizing_record, "current", lambda: now)
        monkeypatch.setattr(bootstrap, "converge_host", lambda cfg, dry_run=False: runs.append((cfg, dry_run)) or rc)
        return runs
    return set_


def test_an_unchanged_host_runs_nothing_and_reads_no_config(host_is, caplog):
    runs = host_is(NANO, NANO)
    with caplog.at_level(logging.INFO):
        assert resize_mod.resize(lambda: pytest.fail("the config was read")) == 0
    assert runs == []
    assert caplog.messages == ["resize: sized for 512 MiB and 2 CPUs, which this host has: nothing to do"]


@pytest.mark.parametrize("rc", [0, 1])
def test_a_changed_host_runs_bootstrap_and_returns_its_status(host_is, caplog, rc):
    runs = host_is(NANO, Inputs(1024 * MIB, 2), rc)
    with caplog.at_level(logging.INFO):
        assert resize_mod.resize(lambda: "the config", dry_run=True) == rc
    assert runs == [("the config", True)]
    assert caplog.messages == ["resize: this host has 1024 MiB and 2 CPUs (memory 512 -> 1024 MiB): "
                               "running bootstrap"]


def test_the_command_exits_with_bootstraps_status(host_is, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    runs = host_is(NANO, Inputs(1024 * MIB, 4), rc=1)
    result = CliRunner().invoke(main, ["--config", str(config), "resize"])
    assert result.exit_code == 1, result.output
    assert len(runs) == 1 and runs[0][0].platform == "auto"  # the file's config, loaded
    assert "CPUs 2 -> 4" in result.output


def test_an_unchanged_boot_loads_none_of_bootstraps_steps(tmp_path):
    """What an unchanged boot costs is the command's start-up and two reads: the converge
    steps (and the config module) are imported only when bootstrap runs."""
    code = ("import sys\nfrom bingo_host import sizing_record as s\nfrom bingo_host.converge import resize\n"
            "s.recorded = s.current\nassert resize.resize(lambda: 1 / 0) == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith(('bingo_host.converge.', "
            "'bingo_host.config', 'jinja2'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['bingo_host.converge.resize']"


@pytest.fixture
def handlers_under(monkeypatch, tmp_path):
    """handlers(socket_attr, stream): the class names of the package's handlers after
    logs.install(journal=True), with logs.<socket_attr> a socket that exists and
    $JOURNAL_STREAM `stream` ("unit": this stdout's, "terminal": another one)."""
    package = logging.getLogger(logs.PACKAGE)
    saved, sockets = list(package.handlers), []
    out = open(tmp_path / "stdout", "w")
    st = (tmp_path / "stdout").stat()

    def handlers(socket_attr: str, stream: str) -> list[str]:
        monkeypatch.setattr(sys, "stdout", out)  # here: pytest's capture takes it back between phases
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp_path / f"{socket_attr}-{len(sockets)}"))
        sockets.append(sock)
        monkeypatch.setattr(logs, socket_attr, sock.getsockname())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + (stream != 'unit')}")
        logs.install(journal=True)
        found = sorted(type(h).__name__ for h in package.handlers)
        for h in package.handlers:
            if type(h).__name__ == "SysLogHandler":
                h.close()
        package.handlers[:] = saved
        return found

    yield handlers
    out.close()
    for sock in sockets:
        sock.close()


def test_a_units_stdout_is_not_told_again_through_dev_log(handlers_under):
    """Under systemd, stdout is the journal ($JOURNAL_STREAM names it): the syslog handler
    would log every line twice there. Elsewhere (a terminal) the handler is installed."""
    assert handlers_under("JOURNAL_SOCKET", "unit") == ["_Console"]
    assert handlers_under("JOURNAL_SOCKET", "terminal") == ["SysLogHandler", "_Console"]


def test_a_units_records_reach_the_journal_once_with_their_fields(handlers_under):
    """With journald's own socket, under a unit the record goes there (fields and all) and the
    stdout copy is dropped; on a terminal both stay."""
    assert handlers_under("JOURNALD_SOCKET", "unit") == ["Journald"]
    assert handlers_under("JOURNALD_SOCKET", "terminal") == ["Journald", "_Console"]
