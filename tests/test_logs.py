"""logs.install: the package's records reach the terminal once, as plain lines on whatever
stdout is at the time; libraries' warnings go to stderr; installing twice never doubles a line."""

from __future__ import annotations

import logging
import logging.handlers

import pytest

from bingo_host import logs


@pytest.fixture
def installed():
    root, package = logging.getLogger(), logging.getLogger(logs.PACKAGE)
    saved = (list(root.handlers), list(package.handlers), package.level)
    yield
    root.handlers[:], package.handlers[:] = saved[0], saved[1]
    package.setLevel(saved[2])


def test_info_is_a_plain_line_on_stdout_and_warnings_say_so(installed, capsys):
    logs.install()
    logging.getLogger("bingo_host.deploy.hooks").info("hook %s: done", "Install")
    logging.getLogger("bingo_host.x").warning("disk nearly full")
    logging.getLogger("bingo_host.x").debug("not shown")
    out, err = capsys.readouterr()
    assert out == "hook Install: done\nwarning: disk nearly full\n"
    assert err == ""


def test_verbose_shows_debug(installed, capsys):
    logs.install(verbose=True)
    logging.getLogger("bingo_host.x").debug("detail")
    assert capsys.readouterr().out == "debug: detail\n"


def test_installing_twice_prints_each_record_once(installed, capsys):
    logs.install()
    logs.install()
    logging.getLogger("bingo_host").info("once")
    assert capsys.readouterr().out == "once\n"


def test_other_libraries_warn_on_stderr_and_stay_quiet_below(installed, capsys):
    logs.install()
    logging.getLogger("botocore.credentials").info("found credentials")
    logging.getLogger("botocore.credentials").warning("expired")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "WARNING botocore.credentials: expired\n"


def test_records_still_reach_caplog(installed, caplog):
    logs.install()
    with caplog.at_level(logging.INFO):
        logging.getLogger("bingo_host.x").info("seen")
    assert [r.getMessage() for r in caplog.records] == ["seen"]


def test_journal_only_where_a_syslog_socket_exists(installed, monkeypatch, tmp_path):
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", str(tmp_path / "no-such-socket"))
    logs.install(journal=True)
    assert not [h for h in logging.getLogger(logs.PACKAGE).handlers
                if isinstance(h, logging.handlers.SysLogHandler)]
