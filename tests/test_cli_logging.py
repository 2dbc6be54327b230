"""The CLI's two ends of a command: its log reaches the journal too when the command changes the
host (the handlers installed once, in the group callback), and a SIGTERM while it can undo its
work ends it with one line and exit 128 + 15, after its cleanups ran."""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host import logs
from bingo_host.cli import main
from bingo_host.converge import bootstrap

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def journal(monkeypatch, tmp_path):
    """A datagram socket in /dev/log's place; returns what was sent to it, one message a record,
    without the syslog priority and tag. The logging handlers are as before afterwards."""
    path = str(tmp_path / "dev-log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", path)
    root, package = logging.getLogger(), logging.getLogger(logs.PACKAGE)
    saved = (list(root.handlers), list(package.handlers), package.level)

    def received() -> list[str]:
        got = []
        while True:
            try:
                data = sock.recv(65536).decode()
            except BlockingIOError:
                return got
            assert data.startswith("<") and "bingo-host: " in data, data
            got.append(data.split("bingo-host: ", 1)[1].rstrip("\0"))

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


def _syslog_handlers():
    return [h for h in logging.getLogger(logs.PACKAGE).handlers
            if isinstance(h, logging.handlers.SysLogHandler)]


def test_a_changing_command_tells_the_journal_what_it_tells_the_terminal(journal, config, monkeypatch):
    def run(cfg, dry_run=False, remove_unknown_db_accounts=False):
        logging.getLogger("bingo_host.converge.bootstrap").info("bootstrap: already converged")
        logging.getLogger("bingo_host.converge.engine").debug("only with --verbose")
        return 0

    monkeypatch.setattr(bootstrap, "converge_host", run)
    result = CliRunner().invoke(main, ["--config", str(config), "bootstrap"])
    assert result.exit_code == 0, result.output
    assert result.output == "bootstrap: already converged\n"
    assert journal() == ["bootstrap: already converged"]
    result = CliRunner().invoke(main, ["--config", str(config), "bootstrap"])
    assert journal() == ["bootstrap: already converged"]  # a second install: still one handler
    assert len(_syslog_handlers()) == 1


def test_a_command_that_changes_nothing_keeps_to_the_terminal(journal, config):
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check", "--json",
                                       "--platform", "debian12"])
    assert result.exit_code == 0, result.output
    assert _syslog_handlers() == [] and journal() == []


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
