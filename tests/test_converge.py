"""The step engine: dry-run skips the work but reports it; a failing step ends the run, named;
each step's line is logged once (caplog)."""

import logging
from types import SimpleNamespace

import pytest

from bingo_host.converge.engine import run_steps
from bingo_host.errors import BingoHostError
from tests.contexts import context


def step(name, body):
    return SimpleNamespace(NAME=name, converge=body)


@pytest.fixture
def said(caplog):
    """The lines the terminal and the journal get (INFO and up, any bingo_host logger)."""
    caplog.set_level(logging.DEBUG, logger="bingo_host")
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_changes_run_unless_dry_run(said, caplog):
    done = []
    for dry_run, expected in ((False, ["x"]), (True, [])):
        done.clear()
        caplog.clear()
        results = run_steps(context(dry_run), [step("one", lambda c: c.change("do x", lambda: done.append("x")))])
        assert done == expected
        assert results[0].status == "changed" and results[0].detail == "do x"
        assert said() == [f"one        {'would change' if dry_run else 'changed':<12} do x"]


def test_a_change_outside_a_step_is_said_as_it_happens(said):
    ctx = context(dry_run=True)
    ctx.change("reload nginx")
    run_steps(ctx, [step("one", lambda c: c.change("do x"))])
    ctx.change("enable x.timer")
    assert said() == ["would reload nginx", "one        would change do x", "would enable x.timer"]


def test_unchanged_step_reports_its_reason(said):
    results = run_steps(context(), [step("calm", lambda c: "all as wanted")])
    assert (results[0].status, results[0].detail) == ("unchanged", "all as wanted")
    assert said() == ["calm       unchanged    all as wanted"]


def test_a_failure_names_the_step_and_stops_the_run(said, caplog):
    ran = []
    for error in (BingoHostError("disk on fire"), KeyError("mysql")):
        ran.clear()
        caplog.clear()

        def boom(c, error=error):
            raise error

        results = run_steps(context(), [step("first", lambda c: ran.append(1)), step("second", boom),
                                        step("third", lambda c: ran.append(3))])
        assert [r.status for r in results] == ["unchanged", "failed"]
        assert ran == [1]
        detail = "disk on fire" if isinstance(error, BingoHostError) else "KeyError: 'mysql'"
        assert detail in results[-1].detail
        # said once, as the step's line; the traceback of an unforeseen error only at DEBUG
        assert said() == ["first      unchanged    as wanted", f"second     failed       {detail}"]
        traced = [r for r in caplog.records if r.exc_info]
        assert [r.levelno for r in traced] == ([] if isinstance(error, BingoHostError) else [logging.DEBUG])


def test_warnings_follow_their_step_line(said):
    run_steps(context(), [step("one", lambda c: c.warn("look at this")), step("two", lambda c: "fine")])
    assert said() == ["one        unchanged    as wanted", "one        warning      look at this",
                     "two        unchanged    fine"]


def test_each_steps_lines_carry_its_name_for_the_journal(caplog):
    caplog.set_level(logging.INFO, logger="bingo_host")
    run_steps(context(), [step("one", lambda c: c.warn("look")), step("two", lambda c: 1 / 0)])
    assert [(r.getMessage()[:18], r.journal) for r in caplog.records] == [
        ("one        unchang", {"STEP": "one"}), ("one        warning", {"STEP": "one"}),
        ("two        failed ", {"STEP": "two"})]


def test_grants_are_parsed_with_grant_options_and_roles():
    """What SHOW GRANTS says (MariaDB 10.11) about an app account a reattached datadir kept."""
    from bingo_host.facts.mariadb import parse_grants

    lines = ["GRANT `superrole` TO `bingoapp`@`localhost`",
             "GRANT ALL PRIVILEGES ON *.* TO `bingoapp`@`localhost` IDENTIFIED BY PASSWORD '*B690' "
             "WITH GRANT OPTION",
             "GRANT ALL PRIVILEGES ON `bingo`.* TO `bingoapp`@`localhost` WITH GRANT OPTION",
             "SET DEFAULT ROLE `superrole` FOR `bingoapp`@`localhost`"]
    assert parse_grants(lines) == {("ROLE", "`superrole`"), ("ALL PRIVILEGES", "*.*"),
                                   ("GRANT OPTION", "*.*"), ("ALL PRIVILEGES", "`bingo`.*"),
                                   ("GRANT OPTION", "`bingo`.*")}
    assert parse_grants(["GRANT USAGE ON *.* TO `bingoapp`@`localhost` IDENTIFIED BY PASSWORD '*B6'",
                         "GRANT ALL PRIVILEGES ON `bingo`.* TO `bingoapp`@`localhost`"]) == \
        {("ALL PRIVILEGES", "`bingo`.*")}
