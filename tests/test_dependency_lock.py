"""The dependency lock hosts install with (bingo_host/constraints.txt): one exact pin per
dependency, the versions this suite runs, inside the wheel, and used by every install of the
wheel the templates make (through bingo_host.install_floor)."""

from __future__ import annotations

import configparser
import re
import runpy
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bingo_host import install_floor
from tests.templates import CONFIG_TEMPLATES, TEMPLATES, init_commands, resources

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "bingo_host" / "constraints.txt"
VENV = "/opt/bingo-host/venv"


def pins() -> list[tuple[str, str]]:
    found = []
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;]*)", line)
            assert m, f"constraints.txt: {line!r} is not name==version"
            found.append((canonicalize_name(m[1]), m[2]))
    return found


def install_requires() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return [Requirement(r) for r in cfg["options"]["install_requires"].splitlines() if r.strip()]


@pytest.mark.parametrize("req", install_requires(), ids=str)
def test_every_dependency_has_exactly_one_pin_within_its_range(req):
    versions = [v for name, v in pins() if name == canonicalize_name(req.name)]
    assert len(versions) == 1, f"{req.name}: {len(versions)} pins in constraints.txt"
    assert req.specifier.contains(versions[0], prereleases=True), f"{req.name}=={versions[0]} is outside {req}"


def test_the_lock_is_what_its_script_makes_from_the_suites_environment():
    """Every distribution the dependencies pull in, at the version this suite runs: a lock not
    refreshed after an upgrade of .venv (or a new install_requires line) fails here."""
    names = [name for name, _ in pins()]
    assert len(names) == len(set(names)), "a distribution pinned twice"
    script = runpy.run_path(str(REPO / "scripts" / "lock-dependencies"))
    assert script["render"]() == LOCK.read_text(), "run .venv/bin/python scripts/lock-dependencies"


def test_the_wheel_carries_the_lock(wheel):
    with zipfile.ZipFile(wheel) as z:
        assert z.read(install_floor.LOCK) == LOCK.read_bytes()


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_cfn_init_installs_the_wheel_only_through_the_floor_and_the_lock(name):
    """The one command that installs the stack's wheel runs install_floor from that wheel (so
    the lock inside it and the never-downgrade rule apply); nothing else pip-installs into the
    venv, in cfn-init or UserData."""
    commands = init_commands(TEMPLATES[name], "install_bingo_host")
    installs = [c for _, c, _ in commands if "install_floor" in c]
    assert installs == ['set -- /opt/bingo-host/wheels/*.whl && PYTHONPATH="$1" python3.11 -m '
                        f'bingo_host.install_floor "$1" {VENV}']
    assert commands == init_commands(TEMPLATES["single-instance.yaml"], "install_bingo_host")
    pip_lines = [line for text in strings(resources(TEMPLATES[name])) for line in text.splitlines()
                 if re.search(r"\bpip", line) and "bingo-host" in line]
    assert not pip_lines, "installs of bingo-host that bypass install_floor"


def strings(node):
    """Every string in a template's node (commands, UserData, file contents)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_upgrades_from_a_bundle_install_with_the_lock():
    """deploy/upgrade.py's install goes through the same pip_install (the new wheel's lock)."""
    source = (REPO / "bingo_host" / "deploy" / "upgrade.py").read_text()
    assert "pip_install(" in source and '"pip", "install"' not in source
