"""The wheel built from the tree ships config_templates and renders what the source tree renders."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel):
    """The session's wheel installed on its own (no dependencies: those come from the test
    environment through PYTHONPATH's order), console script included."""
    target = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                    "--target", str(target), str(wheel)], check=True)
    return target / "bin" / "bingo-host", wheel


def test_wheel_contains_templates(installed):
    import zipfile

    names = zipfile.ZipFile(installed[1]).namelist()
    templates = sorted(p.name for p in (REPO / "config_templates").iterdir())
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("bingo_host/config_templates/")) == templates


def test_wheel_carries_the_example_config(installed, tmp_path):
    """`config init` of the installed copy writes examples/config.yaml: the wheel ships it."""
    dest = tmp_path / "etc" / "config.yaml"
    subprocess.run([installed[0], "config", "init", dest], check=True, cwd="/", env=_env(installed[0]),
                   capture_output=True)
    assert dest.read_bytes() == (REPO / "examples" / "config.yaml").read_bytes()


def test_installed_cli_version_and_render_match_source_tree(installed, tmp_path):
    cli = installed[0]
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True,
                             env=_env(cli), cwd="/").stdout
    from bingo_host import __version__

    assert __version__ in version
    example = REPO / "examples" / "config.yaml"
    for platform in ("amzn2023", "debian12"):
        (tmp_path / "wheel").mkdir(exist_ok=True)
        (tmp_path / "tree").mkdir(exist_ok=True)
        subprocess.run([cli, "--config", example, "render", "--out", tmp_path / "wheel" / platform,
                        "--platform", platform], check=True, cwd="/", env=_env(cli))
        subprocess.run([sys.executable, "-m", "bingo_host", "--config", example, "render", "--out",
                        tmp_path / "tree" / platform, "--platform", platform], check=True, cwd=REPO)
        cmp = filecmp.dircmp(tmp_path / "wheel" / platform, tmp_path / "tree" / platform)
        assert_same(cmp)


def _env(cli: Path) -> dict:
    """Only the installed copy on the path, never the source tree (cwd is / too)."""
    return {**os.environ, "PYTHONPATH": str(cli.parent.parent)}


def assert_same(cmp):
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, cmp.report()
    for sub in cmp.subdirs.values():
        assert_same(sub)



def test_setup_cfg_lists_every_package_of_the_tree():
    """setup.cfg lists packages one by one: one left out is missing from the wheel (a stale
    build/ directory can hide that from a local build)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    tree = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bingo_host").rglob("__init__.py")}
    assert tree <= listed, sorted(tree - listed)


def test_the_status_schema_ships_in_the_wheel_and_status_prints_it(installed):
    """`status --json`'s consumers need its schema on the host, not in a checkout; the copy in
    docs/ is the same file."""
    import zipfile

    shipped = REPO / "bingo_host" / "status" / "schema.json"
    assert shipped.read_bytes() == (REPO / "docs" / "status-schema.json").read_bytes()
    cli = installed[0]
    assert zipfile.ZipFile(installed[1]).read("bingo_host/status/schema.json") == shipped.read_bytes()
    printed = subprocess.run([cli, "status", "--schema"], capture_output=True, check=True,
                             env=_env(cli), cwd="/").stdout
    assert printed == shipped.read_bytes()
    helped = subprocess.run([cli, "status", "--help"], capture_output=True, text=True, check=True,
                            env=_env(cli), cwd="/").stdout
    assert "--schema" in helped and "docs/" not in helped
