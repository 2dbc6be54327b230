"""`bingo-host config init`: the commented example, shipped in the package, written 0600 under a
parent made 0755; never over anything already at the path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from bingo_host import cli, example_config
from bingo_host.config_file import load_config

REPO = Path(__file__).resolve().parent.parent


def init(*args: str):
    return CliRunner().invoke(cli.main, ["config", "init", *args])


def test_writes_the_example_0600_under_a_new_0755_parent(tmp_path):
    dest = tmp_path / "etc" / "bingo-host" / "config.yaml"
    old = os.umask(0o077)  # a strict umask must not leave the directory unreadable
    try:
        result = init(str(dest))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert dest.read_bytes() == (REPO / "examples" / "config.yaml").read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o755
    assert os.listdir(dest.parent) == ["config.yaml"]  # no temporary file left
    load_config(str(dest))  # what it writes is a valid config as it stands


def test_defaults_to_the_config_option(tmp_path):
    dest = tmp_path / "config.yaml"
    result = CliRunner().invoke(cli.main, ["--config", str(dest), "config", "init"])
    assert result.exit_code == 0, result.output
    assert dest.is_file()


def test_refuses_to_overwrite_with_one_line_and_exit_1(tmp_path):
    dest = tmp_path / "config.yaml"
    dest.write_text("mine\n")
    result = init(str(dest))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"bingo-host: error: {dest}: exists; not overwritten "
                                                  "(edit it, or move it away first)"]
    assert dest.read_text() == "mine\n"


def test_never_writes_through_a_link(tmp_path):
    target = tmp_path / "elsewhere"
    dest = tmp_path / "config.yaml"
    dest.symlink_to(target)  # dangling: open(O_CREAT) would create target
    result = init(str(dest))
    assert result.exit_code == 1, result.output
    assert not target.exists()


def test_a_place_it_cannot_write_is_one_line_and_exit_2(tmp_path):
    parent = tmp_path / "file"
    parent.write_text("")
    result = init(str(parent / "config.yaml"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"bingo-host: error: [PATH]: {parent / 'config.yaml'}: Not a directory"]


def test_the_source_trees_example_is_the_one_found():
    """In a checkout the example comes from examples/ (the wheel's copy: tests/test_package.py)."""
    assert example_config.path().read_bytes() == (REPO / "examples" / "config.yaml").read_bytes()
