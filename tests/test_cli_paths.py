"""No traceback for a path a user can get wrong: every path the command line takes (the walk
finds them in the command tree) given a directory this user may not write or read, a missing
directory, a path under a regular file and the wrong type of file says so in one line on
stderr, naming the path, exits 2 and creates nothing. An OSError met while working (after the
checks) is one line too, exit 1; --debug shows its traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bingo_host import cli
from bingo_host.cli.paths import UserPath
from tests import cli_walk

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
# What the walk must find at least: a path option no longer a UserPath would drop out of it.
KNOWN = {"--config", "render --out", "bundle --app", "bundle --out", "bundle --wheel", "deploy BUNDLE",
         "snapshot --socket", "snapshot --state-file", "snapshot --password-file"}
PATHLIKE = {"file", "dir", "path", "out", "socket", "bundle", "config"}  # words of a param's name


def test_the_walk_finds_every_path_the_cli_takes():
    found = {cli_walk.label(path, p) for path, _, p in cli_walk.path_params()}
    assert KNOWN <= found
    untyped = [cli_walk.label(path, p) for path, _, p in cli_walk.every_param()
               if not isinstance(p.type, UserPath) and not getattr(p, "is_flag", False)
               and set((p.name or "").split("_")) & PATHLIKE]
    assert untyped == [], "a path given as a plain string: make it a cli.paths.UserPath"


@pytest.fixture(scope="module")
def walked():
    """The walk's results, the unwritable case as nobody when the suite runs as root."""
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="bingo-walk-"))
    try:
        cli_walk.make_base(base, as_other_user=as_root)
        cases = [c for c in cli_walk.CASES if not (as_root and c == "unwritable")]
        results = cli_walk.walk(base, cases)
        if as_root:
            run = subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 sys.executable, "-m", "tests.cli_walk", str(base), "unwritable"],
                capture_output=True, text=True, cwd=REPO, timeout=120,
                env={**os.environ, "HOME": str(base), "PYTHONDONTWRITEBYTECODE": "1"})
            assert run.returncode == 0, run.stderr
            results += json.loads(run.stdout)
        yield results
    finally:
        cli_walk.unlock(base)
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_every_case_of_every_path_is_walked(walked):
    found = {(r["label"], r["case"]) for r in walked}
    assert {(label, case) for label in KNOWN for case in cli_walk.CASES} <= found


@pytest.mark.parametrize("case", cli_walk.CASES)
def test_a_bad_path_is_one_line_naming_it_exit_2_and_nothing_made(walked, case):
    failures = []
    for r in (r for r in walked if r["case"] == case):
        lines = r["stderr"].splitlines()
        named = r["value"] if case != "missing" else os.path.dirname(r["value"])
        if not (r["exit_code"] == 2 and len(lines) == 1 and lines[0].startswith("bingo-host: error: ")
                and named in lines[0] and "Traceback" not in r["stdout"] + r["stderr"]
                and r["stdout"] == "" and r["created"] == [] and r["exception"] is None):
            failures.append(r)
    assert failures == []


def test_the_lines_say_the_reason(walked):
    by = {(r["label"], r["case"]): r["stderr"] for r in walked}
    assert by[("render --out", "under_a_file")].endswith("/file/x: Not a directory\n")
    assert by[("render --out", "missing")].endswith("/missing: No such file or directory\n")
    assert by[("render --out", "unwritable")].endswith("/locked: Permission denied\n")
    assert by[("bundle --out", "wrong_type")].endswith("/dir: is a directory, not a regular file\n")
    assert by[("--config", "unwritable")].endswith("/hidden/file: Permission denied\n")
    assert by[("--config", "missing")].startswith("bingo-host: error: --config: ")


@pytest.fixture
def command(monkeypatch):
    """Adds a command to the group for one test: `try` runs the given function."""
    def add(fn):
        monkeypatch.setitem(cli.main.commands, "try", click.Command("try", callback=fn))
    return add


def test_an_os_error_while_working_is_the_path_and_the_reason_exit_1(command, tmp_path):
    (tmp_path / "file").write_text("")
    command(lambda: open(tmp_path / "file" / "x", "w"))
    result = CliRunner().invoke(cli.main, ["try"])
    assert result.exit_code == 1
    assert result.stderr == f"bingo-host: error: {tmp_path}/file/x: Not a directory\n"
    assert result.stdout == ""
    result = CliRunner().invoke(cli.main, ["--debug", "try"])
    assert isinstance(result.exception, NotADirectoryError)


def test_two_paths_and_none_and_bad_text(command, tmp_path):
    command(lambda: os.rename(tmp_path / "a", tmp_path / "b"))
    result = CliRunner().invoke(cli.main, ["try"])
    assert result.stderr == f"bingo-host: error: {tmp_path}/a -> {tmp_path}/b: No such file or directory\n"
    command(lambda: (_ for _ in ()).throw(ConnectionRefusedError(111, "Connection refused")))
    result = CliRunner().invoke(cli.main, ["try"])
    assert result.stderr == ("bingo-host: error: Connection refused (ConnectionRefusedError; "
                             "--debug shows where)\n")
    command(lambda: b"\xff".decode())
    result = CliRunner().invoke(cli.main, ["try"])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("bingo-host: error: not UTF-8 text (invalid start byte at byte 0")


def test_render_into_a_file_where_a_directory_goes_names_the_whole_path(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"files": []}\n')
    (out / "etc").write_text("in the way\n")
    result = CliRunner().invoke(cli.main, ["--config", str(REPO / "examples" / "config.yaml"),
                                           "render", "--out", str(out), "--platform", "debian12"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"bingo-host: error: --out: {out}: etc under it is ")
    assert "Traceback" not in result.output


def test_a_usage_error_is_one_line_with_where_to_look():
    result = CliRunner().invoke(cli.main, ["bootstrap", "--no-such"])
    assert result.exit_code == 2
    assert result.stderr == ("bingo-host: error: No such option '--no-such' "
                             "(see 'main bootstrap --help')\n")
