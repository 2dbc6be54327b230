"""Previews for another machine: `render` and `config check` size 'auto' for the memory and CPUs
given (--memory, --cpus) or an EC2 type's (--instance-type), not for the machine running them; a
bad value is one line, exit 2, nothing written."""

from __future__ import annotations

import os

import pytest
import yaml
from click.testing import CliRunner

from bingo_host import resolve
from bingo_host.cli import main
from bingo_host.errors import ConfigError
from bingo_host.facts import memory


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("platform: debian12\n")
    return path


def check(config, *args) -> tuple[str, dict]:
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check", *args])
    assert result.exit_code == 0, result.output
    note, body = result.stdout.split("\n", 1)
    return note, yaml.safe_load(body)


@pytest.mark.parametrize("args, note, processes, swap, agent", [
    (["--instance-type", "t3a.nano"], "with 512 MiB and 2 CPUs", 2, "1G", False),
    (["--instance-type", "m7g.xlarge"], "with 16384 MiB and 4 CPUs", 8, "2G", True),
    (["--memory", "8G", "--cpus", "4"], "with 8192 MiB and 4 CPUs", 8, "2G", True),
    (["--memory", "768M", "--cpus", "1"], "with 768 MiB and 1 CPU", 2, "1G", False),
])
def test_config_check_sizes_auto_for_the_machine_given(config, args, note, processes, swap, agent):
    said, data = check(config, *args)
    assert said.endswith(f"'auto' resolved for debian12 {note}")
    assert (data["app"]["processes"], data["swap"]["size"], data["cloudwatch_agent"]["enabled"]) == \
        (processes, swap, agent)


def test_what_is_not_given_is_this_hosts(config):
    here_mib = memory.read().usable_bytes // (1 << 20)
    cpus = os.cpu_count()
    said, _ = check(config, "--memory", "1G")
    assert said.endswith(f"with 1024 MiB and {cpus} CPU{'s' * (cpus > 1)} (this host)")
    said, _ = check(config, "--cpus", "3")
    assert said.endswith(f"with {here_mib} MiB (this host) and 3 CPUs")
    said, _ = check(config)
    assert said.endswith("'auto' resolved for debian12 on this host")


def rendered(tmp_path, config, *args) -> dict[str, str]:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--config", str(config), "render", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return {name: (out / name.lstrip("/")).read_text() for name in (
        "/etc/bingo-host/vassals/music-bingo-blue.ini", "/etc/mysql/mariadb.conf.d/zz-bingo-host.cnf")}


@pytest.mark.parametrize("args, processes, pool", [
    (["--instance-type", "t3a.nano"], 2, "128M"), (["--memory", "8G", "--cpus", "4"], 8, "2048M")])
def test_render_sizes_auto_for_the_machine_given(tmp_path, config, args, processes, pool):
    files = rendered(tmp_path, config, *args)
    assert f"\nprocesses = {processes}\n" in files["/etc/bingo-host/vassals/music-bingo-blue.ini"]
    assert f"\ninnodb_buffer_pool_size = {pool}\n" in files["/etc/mysql/mariadb.conf.d/zz-bingo-host.cnf"]


@pytest.mark.parametrize("args, line", [
    (["--memory", "lots"], "--memory: must be a size between 128M and 4096G such as 512M or 1G (got 'lots')"),
    (["--cpus", "0"], "--cpus: must be a whole number between 1 and 448 (got '0')"),
    (["--instance-type", "t3a.nnao"], "--instance-type: 't3a.nnao' is not in the table; did you mean t3a.nano?"),
    (["--instance-type", "t3a.nano", "--memory", "1G"],
     "--instance-type: names the memory and CPUs: give it or --memory and --cpus, not both"),
])
def test_a_bad_machine_is_one_line_exit_2_and_nothing_written(tmp_path, config, args, line):
    out = tmp_path / "out"
    for argv in (["config", "check"], ["render", "--out", str(out)]):
        result = CliRunner().invoke(main, ["--config", str(config), *argv, *args])
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert result.stderr.startswith(f"bingo-host: error: {line}") and result.stderr.count("\n") == 1
    assert not out.exists()


def test_without_a_platform_auto_is_left_and_the_note_says_how_to_name_one(tmp_path, monkeypatch):
    def undetected(name):
        raise ConfigError("platform", "not detected")
    monkeypatch.setattr(resolve.platforms, "get", undetected)
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    note, data = check(path, "--instance-type", "t3a.nano")
    assert note.endswith("'auto' left unresolved (no platform detected: --platform names one)")
    assert data["app"]["processes"] == "auto" and data["swap"]["size"] == "auto"
