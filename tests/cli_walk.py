"""Every path the command line takes, found in the click command tree (a new command or option
is walked without a change here), given paths that cannot work, each case in a directory of
its own. tests/test_cli_paths.py runs the walk; the case of a directory this user may not
write or read runs as `nobody` when the suite is root (root may write anywhere), through
`python -m tests.cli_walk BASE CASE...`, which prints the results as JSON."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from bingo_host import cli
from bingo_host.cli.paths import UserPath

CASES = ("unwritable", "missing", "under_a_file", "wrong_type")
# What a group option is walked with: a command that reads only.
AFTER_GROUP = ["config", "check"]


def leaves(group: click.Group, ctx: click.Context, prefix=()):
    """(argv to reach it, command) of every command that is not a group."""
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, click.Context(cmd, parent=ctx), (*prefix, name))
        else:
            yield (*prefix, name), cmd


def every_param():
    """(command path, None for the group's own, param) for every parameter of the tree."""
    for param in cli.main.params:
        yield (), None, param
    for path, cmd in leaves(cli.main, click.Context(cli.main)):
        for param in cmd.params:
            yield path, cmd, param


def path_params():
    return [(path, cmd, p) for path, cmd, p in every_param() if isinstance(p.type, UserPath)]


def label(path, param) -> str:
    name = param.opts[0] if param.param_type_name == "option" else param.human_readable_name
    return " ".join([*path, name])


def make_base(base: Path, as_other_user: bool) -> None:
    """The directories the cases point into. `locked` is not writable and `hidden` not
    searchable by the walking user: as root, they are root's and the walk runs as nobody."""
    (base / "file").write_text("no_such_key: 1\n")  # a config every command refuses
    (base / "dir").mkdir()
    (base / "locked").mkdir()
    (base / "open").mkdir()
    os.chmod(base / "open", 0o777)  # where the good output paths go, for whoever walks
    hidden = base / "hidden"
    hidden.mkdir()
    (hidden / "file").write_text("x\n")
    (hidden / "dir").mkdir()
    for where in (base, hidden):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(where / "socket"))
    if as_other_user:
        os.chmod(base, 0o755)
        os.chmod(base / "locked", 0o755)
        os.chmod(hidden, 0o700)
    else:
        os.chmod(base / "locked", 0o555)
        os.chmod(hidden, 0)


def unlock(base: Path) -> None:
    for name in ("locked", "hidden"):
        os.chmod(base / name, 0o755)


def bad_path(base: Path, kind: UserPath, case: str) -> str:
    if case == "missing":  # a type that makes missing directories: one it cannot make
        return str(base / ("file" if kind.parents else "") / "missing" / "x")
    if case == "under_a_file":
        return str(base / "file" / "x")
    if case == "unwritable":
        if kind.output:
            return str(base / "locked" / "x")
        return str(base / "hidden" / next(k for k in ("file", "dir", "socket") if k in kind.kinds))
    if "file" in kind.kinds and "dir" in kind.kinds:
        return str(base / "socket")
    return str(base / ("file" if "dir" in kind.kinds or "socket" in kind.kinds else "dir"))


def good_value(base: Path, param: click.Parameter, n: int) -> str:
    kind = param.type
    if isinstance(kind, UserPath):
        return str(base / "open" / f"new-{n}") if kind.output else str(base / ("dir" if "dir" in kind.kinds else "file"))
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    return "x"


def argv_for(base: Path, path, cmd, param, value: str) -> list[str]:
    """The command line giving param value and every other required parameter a good one. A
    command is given a config it refuses: were a bad path let through, the command stops there
    (exit 2) instead of working on this machine, and this walk's check of "one line naming the
    path" fails."""
    def give(p, v):
        return [p.opts[0], v] if p.param_type_name == "option" else [v]

    if cmd is None:
        return [*give(param, value), *AFTER_GROUP]
    args = []
    for n, p in enumerate(cmd.params):
        if p is param:
            args += give(p, value)
        elif p.required:
            args += give(p, good_value(base, p, n))
    return ["--config", str(base / "file"), *path, *args]


def listing(base: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), base)
                  for d, dirs, files in os.walk(base) for n in dirs + files)


def walk(base: Path, cases) -> list[dict]:
    results = []
    for path, cmd, param in path_params():
        for case in cases:
            value = bad_path(base, param.type, case)
            argv = argv_for(base, path, cmd, param, value)
            before = listing(base)
            result = CliRunner().invoke(cli.main, argv)
            results.append({"label": label(path, param), "case": case, "argv": argv, "value": value,
                            "exit_code": result.exit_code, "stdout": result.stdout,
                            "stderr": result.stderr,
                            "created": sorted(set(listing(base)) - set(before)),
                            "exception": None if result.exception is None or isinstance(
                                result.exception, SystemExit) else repr(result.exception)})
    return results


if __name__ == "__main__":
    json.dump(walk(Path(sys.argv[1]), sys.argv[2:]), sys.stdout)
