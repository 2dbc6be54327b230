"""The CLI package: its lazy group lists every command from a table without importing them, the
table says what each command says of itself, and every command that changes the host takes
`--dry-run` after its name, with one meaning: say what would change, change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bingo_host import cli
from tests.cli_walk import leaves

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


# The commands that change the host (cli.JOURNALED) and have no dry run, and why.
NO_DRY_RUN = {("hook",): "the CodeDeploy agent's: one lifecycle event of a deployment under way"}


def _changing():
    return {path: cmd for path, cmd in leaves(cli.main, click.Context(cli.main))
            if path[0] in cli.JOURNALED}


def test_every_command_that_changes_the_host_takes_dry_run_after_its_name():
    changing = _changing()
    assert len(changing) >= 14 and {("rollback",), ("backup",), ("restore",), ("secrets", "refresh"),
                                    ("release-volume",), ("snapshot",), ("bootstrap",)} <= set(changing)
    without = {path for path, cmd in changing.items() if not any("--dry-run" in p.opts for p in cmd.params)}
    assert without == set(NO_DRY_RUN)


def test_dry_run_means_one_thing_everywhere():
    helps = {p.help for _, cmd in leaves(cli.main, click.Context(cli.main)) for p in cmd.params
             if "--dry-run" in p.opts}
    assert helps == {"Say what would change and change nothing (exit 0 unless it would fail)."}


@pytest.mark.parametrize("argv", [["hook", "BeforeInstall", "--dry-run"], ["metrics", "push", "--dry-run"],
                                  ["status", "--dry-run"]])
def test_a_dry_run_where_there_is_none_is_no_such_option(argv):
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 2, result.output
    assert "No such option '--dry-run'" in result.stderr


def test_the_old_place_of_dry_run_is_refused_saying_where_it_goes():
    result = CliRunner().invoke(cli.main, ["--dry-run", "bootstrap"])
    assert result.exit_code == 2
    assert result.stderr == ("bingo-host: error: --dry-run: goes after the command now: "
                             "bingo-host COMMAND --dry-run\n")


BACKUPS = "backups: {enabled: true, bucket: bingo-backups, keep: 3}\n"


@pytest.mark.parametrize("argv, said", [
    (["backup"], "backup: would dump bingo (mariadb-dump --single-transaction, gzip) to "
                 "s3://bingo-backups/bingo-host/, then keep the newest 3\n"),
    (["restore-drill"], "restore-drill: would load the latest dump under s3://bingo-backups/bingo-host/ "
                        "into bingo_drill, compare its row counts with the dump's record and drop it\n"),
    (["restore", "--dump", "latest"], "restore: would load the latest dump under "
                                      "s3://bingo-backups/bingo-host/ into bingo_restore, "),
    (["allow-older", "2026-01-31T12:00:00Z"], "allow-older: the next deployment would be allowed to "),
    (["patch"], "patch: would run "),
])
def test_a_dry_run_says_what_would_change_and_exits_0(tmp_path, argv, said):
    config = tmp_path / "config.yaml"
    config.write_text(BACKUPS)
    from bingo_host.deploy import freshness

    before = os.path.lexists(freshness.ALLOW_FILE)
    result = CliRunner().invoke(cli.main, ["--config", str(config), *argv, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(said) and result.stderr == ""
    assert os.path.lexists(freshness.ALLOW_FILE) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_dry_run_refuses_what_the_run_would_refuse(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    result = CliRunner().invoke(cli.main, ["--config", str(config), "backup", "--dry-run"])
    assert result.exit_code == 2 and "backups.enabled: is false" in result.stderr


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


def test_deploy_dry_run_checks_the_revision_and_runs_nothing(tmp_path):
    from bingo_host.deploy import agent

    wheel = tmp_path / "bingo_host-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    revision = tmp_path / "r.zip"
    made = CliRunner().invoke(cli.main, ["bundle", "--app", str(REPO / "tests" / "fixtures" / "sample_app"),
                                         "--out", str(revision), "--wheel", str(wheel)])
    assert made.exit_code == 0, made.output
    root = agent.root_dir(agent.CONFIG)
    before = os.path.lexists(root), sorted(tmp_path.iterdir())
    result = CliRunner().invoke(cli.main, ["--config", str(tmp_path / "none.yaml"), "deploy", str(revision),
                                           "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"deploy: would deploy {revision} (zip; its appspec checks out): "
                                    "its hooks for BeforeInstall, ")
    assert (os.path.lexists(root), sorted(tmp_path.iterdir())) == before
    (tmp_path / "not-a-revision").mkdir()
    result = CliRunner().invoke(cli.main, ["--config", str(tmp_path / "none.yaml"), "deploy",
                                           str(tmp_path / "not-a-revision"), "--dry-run"])
    assert result.exit_code == 2 and "no appspec.yml" in result.stderr
