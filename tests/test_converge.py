"""The step engine: dry-run skips the work but reports it; a failing step ends the run, named."""

from types import SimpleNamespace

from bingo_host.converge.engine import run_steps
from bingo_host.errors import BingoHostError
from tests.contexts import context


def step(name, body):
    return SimpleNamespace(NAME=name, converge=body)


def test_changes_run_unless_dry_run():
    done = []
    for dry_run, expected in ((False, ["x"]), (True, [])):
        done.clear()
        ctx, lines = context(dry_run)
        results = run_steps(ctx, [step("one", lambda c: c.change("do x", lambda: done.append("x")))])
        assert done == expected
        assert results[0].status == "changed" and results[0].detail == "do x"
        assert ("would change" in lines[0]) == dry_run


def test_unchanged_step_reports_its_reason():
    ctx, lines = context()
    results = run_steps(ctx, [step("calm", lambda c: "all as wanted")])
    assert (results[0].status, results[0].detail) == ("unchanged", "all as wanted")
    assert lines == ["calm       unchanged    all as wanted"]


def test_a_failure_names_the_step_and_stops_the_run():
    ran = []
    for error in (BingoHostError("disk on fire"), KeyError("mysql")):
        ran.clear()

        def boom(c, error=error):
            raise error

        ctx, lines = context()
        results = run_steps(ctx, [step("first", lambda c: ran.append(1)), step("second", boom),
                                  step("third", lambda c: ran.append(3))])
        assert [r.status for r in results] == ["unchanged", "failed"]
        assert ran == [1]
        assert "second" in lines[-1] and "failed" in lines[-1]
        assert ("disk on fire" if isinstance(error, BingoHostError) else "KeyError: 'mysql'") in results[-1].detail


def test_warnings_follow_their_step_line():
    ctx, lines = context()
    run_steps(ctx, [step("one", lambda c: c.warn("look at this")), step("two", lambda c: "fine")])
    assert lines == ["one        unchanged    as wanted", "one        warning      look at this",
                     "two        unchanged    fine"]


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
