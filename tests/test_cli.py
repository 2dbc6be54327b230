"""The CLI package: its lazy group lists every command from a table without importing them, the
table says what each command says of itself, and `--dry-run` belongs to the commands that have one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bingo_host import cli

REPO = Path(__file__).resolve().parent.parent
COMMAND_MODULES = ("bingo_host.cli.bootstrap", "bingo_host.cli.host", "bingo_host.cli.data", "bingo_host.cli.deploy",
                   "bingo_host.cli.status", "bingo_host.cli.config", "bingo_host.cli.hook",
                   "bingo_host.cli.metrics")


def _command(name: str) -> click.Command:
    return cli.main.get_command(click.Context(cli.main), name)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_the_listing_table_says_what_each_command_says(name):
    cmd = _command(name)
    assert cmd.name == name
    assert cli.COMMANDS[name][1] == (None if cmd.hidden else cmd.get_short_help_str(limit=10**6))


def test_help_lists_as_click_would_with_every_command_loaded():
    lazy = CliRunner().invoke(cli.main, ["--help"], terminal_width=100)
    loaded = click.Group("main", commands=[_command(n) for n in cli.COMMANDS])
    ctx = click.Context(cli.main, info_name="main", terminal_width=100)
    formatter = ctx.make_formatter()
    click.Group.format_commands(loaded, ctx, formatter)
    assert lazy.exit_code == 0
    assert formatter.getvalue() in lazy.output
    assert "restart-agent" not in lazy.output  # hidden


def test_help_imports_no_command_module():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "bingo_host", "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "bingo_host.cli" in imported
    assert not imported & set(COMMAND_MODULES)
    assert "bingo_host.config_file" not in imported


def test_bootstrap_loads_no_aws_sdk():
    """A converged bootstrap re-run is a fraction of a second; boto3 alone costs ~130 ms of
    imports, and bootstrap calls no AWS API."""
    code = ("import sys, click; from bingo_host import cli; "
            "cli.main.get_command(click.Context(cli.main), 'bootstrap'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_an_unknown_command_is_bad_input():
    result = CliRunner().invoke(cli.main, ["no-such-command"])
    assert result.exit_code == 2 and "No such command 'no-such-command'" in result.output


DRY_RUNS = {("bootstrap",), ("render",), ("snapshot",), ("restore",), ("release-volume",), ("resize",),
            ("enable-https",), ("secrets", "refresh")}


def _leaves(group: click.Group, ctx: click.Context, prefix=()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, click.Context(cmd, parent=ctx), (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_dry_run_is_an_option_of_exactly_the_commands_that_have_one():
    with_dry_run = {path for path, cmd in _leaves(cli.main, click.Context(cli.main))
                    if any("--dry-run" in p.opts for p in cmd.params)}
    assert with_dry_run == DRY_RUNS


@pytest.mark.parametrize("argv", [["backup", "--dry-run"], ["create-admin", "--dry-run"],
                                  ["hook", "BeforeInstall", "--dry-run"], ["metrics", "push", "--dry-run"],
                                  ["--dry-run", "bootstrap"]])
def test_a_dry_run_where_there_is_none_is_no_such_option(tmp_path, argv):
    result = CliRunner().invoke(cli.main, ["--config", str(tmp_path / "none.yaml"), *argv])
    assert result.exit_code == 2, result.output
    assert "No such option '--dry-run'" in result.output


def _bootstrap_fails(monkeypatch, tmp_path, exc):
    from bingo_host.cli import bootstrap as host

    def boom(*args, **kwargs):
        raise exc
    monkeypatch.setattr(host.bootstrap_mod, "converge_host", boom)
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    return ["--config", str(config)]


def test_an_unexpected_error_is_one_line_and_exit_1_without_debug(monkeypatch, tmp_path):
    args = _bootstrap_fails(monkeypatch, tmp_path, KeyError("volume"))
    result = CliRunner().invoke(cli.main, [*args, "bootstrap"])
    assert result.exit_code == 1
    assert result.output == "bingo-host: internal error: KeyError: 'volume' (--debug shows where)\n"
    assert "Traceback" not in result.output


def test_debug_lets_the_traceback_through(monkeypatch, tmp_path):
    args = _bootstrap_fails(monkeypatch, tmp_path, KeyError("volume"))
    result = CliRunner().invoke(cli.main, [*args, "--debug", "bootstrap"])
    assert isinstance(result.exception, KeyError)


def test_a_bad_input_error_keeps_its_own_line_and_status(monkeypatch, tmp_path):
    from bingo_host.errors import ConfigError

    args = _bootstrap_fails(monkeypatch, tmp_path, ConfigError("volume.device", "no such device"))
    result = CliRunner().invoke(cli.main, [*args, "bootstrap"])
    assert result.exit_code == 2
    assert result.output.startswith("bingo-host: error: volume.device")
