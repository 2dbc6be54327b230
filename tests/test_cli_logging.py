"""The CLI's two ends of a command: its log reaches the journal too when the command changes the
host (the handlers installed once, in the group callback), and a SIGTERM while it can undo its
work ends it with one line and exit 128 + 15, after its cleanups ran."""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host import logs
from bingo_host.cli import main
from bingo_host.converge import bootstrap

REPO = Path(__file__).resolve().parent.parent


def parse_entry(data: bytes) -> dict[str, str]:
    """One datagram of journald's native protocol: KEY=value lines, or KEY, newline, a 64-bit
    little-endian length, the value and a newline."""
    fields, pos = {}, 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            pos = end + 1
        else:
            key, (size,) = line, struct.unpack("<Q", data[end + 1:end + 9])
            value = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            pos = end + 10 + size
        fields[key.decode()] = value.decode()
    return fields


def _listening(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock


@pytest.fixture
def journal(monkeypatch, tmp_path):
    """A datagram socket in journald's place (and none at /dev/log); returns the entries sent to
    it since the last call, each a dict of its fields. The logging handlers are as before
    afterwards."""
    sock = _listening(str(tmp_path / "journal-socket"))
    monkeypatch.setattr(logs, "JOURNALD_SOCKET", str(tmp_path / "journal-socket"))
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", str(tmp_path / "no-dev-log"))
    root, package = logging.getLogger(), logging.getLogger(logs.PACKAGE)
    saved = (list(root.handlers), list(package.handlers), package.level)

    def received() -> list[dict[str, str]]:
        got = []
        while True:
            try:
                got.append(parse_entry(sock.recv(1 << 20)))
            except BlockingIOError:
                return got

    yield received
    for handler in package.handlers:
        if handler not in saved[1]:
            handler.close()
    root.handlers[:], package.handlers[:] = saved[0], saved[1]
    package.setLevel(saved[2])
    sock.close()


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("database:\n  host: db.example.com\n  password: literal-password-1\n")
    return path


def _journal_handlers():
    return [h for h in logging.getLogger(logs.PACKAGE).handlers
            if isinstance(h, (logs.Journald, logging.handlers.SysLogHandler))]


def _messages(entries):
    return [e["MESSAGE"] for e in entries]


def test_a_changing_command_tells_the_journal_what_it_tells_the_terminal(journal, config, monkeypatch):
    def run(cfg, dry_run=False, remove_unknown_db_accounts=False):
        logging.getLogger("bingo_host.converge.bootstrap").info("bootstrap: already converged")
        logging.getLogger("bingo_host.converge.engine").debug("only with --verbose")
        return 0

    monkeypatch.setattr(bootstrap, "converge_host", run)
    result = CliRunner().invoke(main, ["--config", str(config), "bootstrap"])
    assert result.exit_code == 0, result.output
    assert result.output == "bootstrap: already converged\n"
    assert _messages(journal()) == ["bootstrap: already converged", "bootstrap: ok"]
    result = CliRunner().invoke(main, ["--config", str(config), "bootstrap"])
    # a second install: still one handler
    assert _messages(journal()) == ["bootstrap: already converged", "bootstrap: ok"]
    assert len(_journal_handlers()) == 1


def test_a_command_that_changes_nothing_keeps_to_the_terminal(journal, config):
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check", "--json",
                                       "--platform", "debian12"])
    assert result.exit_code == 0, result.output
    assert _journal_handlers() == [] and journal() == []


SLEEPER = """
import sys, time
sys.path.insert(0, {repo!r})
from bingo_host import cli
from bingo_host.ops.cleanup import Cleanup

@cli.main.command("sleep")
def sleep():
    with Cleanup() as undo:
        undo.register(print, "undone", flush=True)
        print("ready", flush=True)
        time.sleep(60)
        print("slept through", flush=True)

cli.main(["--config", "/nonexistent", "sleep"], prog_name="bingo-host")
"""


def test_a_sigtermed_command_unwinds_and_exits_143_with_one_line():
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER.format(repo=str(REPO))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM == 143
    assert err == "bingo-host: stopped by SIGTERM\n"
    assert out == "undone\n"


def test_journal_entries_carry_the_command_the_logger_and_the_outcome(journal, config, monkeypatch):
    from bingo_host.cli import deploy as deploy_cli
    from bingo_host.deploy import DeployError

    def fails(cfg, dry_run=False):
        logging.getLogger("bingo_host.deploy.rollback").info("rollback: r2 -> r1")
        raise DeployError("rollback to r1 failed its checks, r2 serves again:\nhealth: 502")

    monkeypatch.setattr(deploy_cli.rollback_mod, "rollback", fails)
    result = CliRunner().invoke(main, ["--config", str(config), "rollback"])
    assert result.exit_code == 1
    step, last = journal()
    assert step == {"MESSAGE": "rollback: r2 -> r1", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "bingo-host",
                    "LOGGER": "bingo_host.deploy.rollback", "COMMAND": "rollback"}
    assert last == {"MESSAGE": "rollback: failed: rollback to r1 failed its checks, r2 serves again:\n"
                               "health: 502",  # a newline: the protocol's binary form
                    "PRIORITY": "3", "SYSLOG_IDENTIFIER": "bingo-host", "LOGGER": "bingo_host",
                    "COMMAND": "rollback", "OUTCOME": "failed", "EXIT_STATUS": "1"}
    assert "rollback: failed" not in result.stdout  # the outcome entry is the journal's only


def test_a_hooks_entries_carry_its_event_and_deployment(journal, config, monkeypatch):
    from bingo_host.cli import hook as hook_cli

    monkeypatch.setattr(hook_cli.hooks, "run_hook", lambda cfg, event: logging.getLogger(
        "bingo_host.deploy.hooks").info("hook %s: done", event))
    monkeypatch.setenv("DEPLOYMENT_ID", "d-ABCDEF123")
    result = CliRunner().invoke(main, ["--config", str(config), "hook", "ApplicationStop"])
    assert result.exit_code == 0, result.output
    entries = journal()
    assert [(e["MESSAGE"], e.get("OUTCOME")) for e in entries] == [("hook ApplicationStop: done", None),
                                                                  ("hook: ok", "ok")]
    assert all(e["COMMAND"] == "hook" and e["STEP"] == "ApplicationStop"
               and e["DEPLOYMENT_ID"] == "d-ABCDEF123" for e in entries)


def test_bad_input_to_a_changing_command_is_a_refused_outcome(journal, config):
    result = CliRunner().invoke(main, ["--config", str(config), "restore", "--no-such"])
    assert result.exit_code == 2
    (entry,) = journal()
    assert entry["OUTCOME"] == "refused" and entry["EXIT_STATUS"] == "2" and entry["COMMAND"] == "restore"
    assert "No such option '--no-such'" in entry["MESSAGE"]


def test_a_deploys_entries_carry_its_deployment_id(journal, tmp_path, agent_root):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.yaml"), "deploy",
                                       str(tmp_path / "empty"), "--deployment-id", "d-JOURNAL01"])
    assert result.exit_code == 2  # no appspec.yml: refused before anything ran
    entries = journal()
    assert entries and all(e["DEPLOYMENT_ID"] == "d-JOURNAL01" and e["COMMAND"] == "deploy" for e in entries)
    assert entries[-1]["OUTCOME"] == "refused"
    assert not agent_root.exists() or not any(agent_root.rglob("*"))
