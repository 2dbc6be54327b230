"""The README's quick start, its shell blocks copied from README.md, run in a fresh Debian 12 test
host by a user with sudo (`sudo -s`, as the README says), every command stopping the run on
failure (`set -e`).

What stands in for the operator: the session's wheel is the downloaded one (placed in the user's
directory), and the edit the README asks for between the two blocks is made here: the test host's
loop device as `volume.device`, a small swap file, the firewall off (the test host shares this
machine's network namespace: its nftables table would be the machine's) and snapshots off (they
need EC2). It stops where the quick start stops: `bingo-host status` on the bootstrapped host;
deploying the app needs CodeDeploy or a bundle (tests/test_deploy.py, test_codedeploy_agent.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USER = "admin1"
HOME = f"/home/{USER}"
CONFIG = "/etc/bingo-host/config.yaml"


def quick_start_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    return re.findall(r"^```sh\n(.*?)^```", section.group(1), re.S | re.M)


def operator_edit(config: str, device: str) -> str:
    """The edit the README asks for, and what a test host needs on top (see the docstring)."""
    edits = [(r"^(volume:.*\n  device: )/dev/sdf", rf"\g<1>{device}"),
             (r"^(swap:.*\n  size: )auto", r"\g<1>32M"),
             (r"^(snapshots:.*\n  enabled: )true", r"\g<1>false"),
             (r"^(firewall:.*\n  enabled: )true", r"\g<1>false")]
    for pattern, new in edits:
        config, n = re.subn(pattern, new, config, count=1, flags=re.M)
        assert n == 1, f"the example config changed: no {pattern!r}"
    return config


def as_operator(host, script: str):
    """script typed into `sudo -s` by the user, in the user's directory, stopping at a failure."""
    return host.run(["runuser", "-u", USER, "--", "sh", "-c", f"cd {HOME} && exec sudo -s"],
                    input="set -e\n" + script, check=False, timeout=1800)


@pytest.fixture(scope="module")
def bare_host(host_pool, wheel):
    """A fresh test host without bingo-host, a user in the sudo group, the wheel in its directory."""
    host = host_pool.fresh()
    try:
        host.run(["rm", "-rf", "/opt/bingo-host", "/usr/local/bin/bingo-host", "/tmp/bingo-wheels"])
        host.run(["useradd", "--create-home", "--groups", "sudo", USER])
        host.put_file(f"/etc/sudoers.d/{USER}", f"{USER} ALL=(ALL) NOPASSWD: ALL\n", mode=0o440)
        host.put_file(f"{HOME}/{wheel.name}", wheel.read_bytes())
        host.run(["chown", f"{USER}:", f"{HOME}/{wheel.name}"])
        yield host
    finally:
        host.shutdown()


def test_the_readme_has_two_quick_start_blocks_without_bashisms():
    blocks = quick_start_blocks()
    assert len(blocks) == 2, blocks
    for block in blocks:
        assert "<(" not in block and "[[" not in block, "the blocks run in sh: no bash-only syntax"
        assert not re.search(r"^sudo ", block, re.M), "the README says `sudo -s` first"


def test_quick_start_as_written(bare_host):
    host = bare_host
    install, converge = quick_start_blocks()
    first = as_operator(host, install)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "python3.11" in install  # AL2023's python3 is 3.9: the README names 3.11
    assert host.run(["stat", "-c", "%a %U", CONFIG]).stdout.split() == ["600", "root"]
    assert host.run(["stat", "-c", "%a %U", "/etc/bingo-host"]).stdout.split() == ["755", "root"]
    assert host.run(["test", "-e", "/usr/local/bin/bingo-host"], check=False).returncode == 1

    volume = host.attach_volume(size_mb=512)
    host.put_file(CONFIG, operator_edit(host.read_file(CONFIG), volume.device), mode=0o600)
    second = as_operator(host, converge)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "healthy" in second.stdout.lower()
    assert host.run(["readlink", "/usr/local/bin/bingo-host"]).stdout.strip() == "/opt/bingo-host/venv/bin/bingo-host"


def test_a_failing_command_fails_the_run(bare_host):
    """What makes the test above able to fail: the first failing line stops the shell."""
    result = as_operator(bare_host, "true\nfalse\ntouch /tmp/after-false\n")
    assert result.returncode != 0
    assert bare_host.run(["test", "-e", "/tmp/after-false"], check=False).returncode == 1
