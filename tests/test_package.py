"""The wheel built from the tree ships config_templates and renders what the source tree renders."""

import filecmp
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(REPO)],
                   check=True)
    wheel = next((tmp / "dist").glob("bingo_host-*.whl"))
    venv.create(tmp / "venv", with_pip=True, system_site_packages=False)
    # Dependencies from the test environment's own wheels cache; the package itself not editable.
    subprocess.run([tmp / "venv/bin/pip", "install", "-q", str(wheel)], check=True)
    return tmp / "venv/bin/bingo-host", wheel


def test_wheel_contains_templates(installed):
    import zipfile

    names = zipfile.ZipFile(installed[1]).namelist()
    templates = sorted(p.name for p in (REPO / "config_templates").iterdir())
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("bingo_host/config_templates/")) == templates


def test_installed_cli_version_and_render_match_source_tree(installed, tmp_path):
    cli = installed[0]
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
    from bingo_host import __version__

    assert __version__ in version
    example = REPO / "examples" / "config.yaml"
    for platform in ("amzn2023", "debian12"):
        subprocess.run([cli, "--config", example, "render", "--out", tmp_path / "wheel" / platform,
                        "--platform", platform], check=True, cwd="/")
        subprocess.run([sys.executable, "-m", "bingo_host", "--config", example, "render", "--out",
                        tmp_path / "tree" / platform, "--platform", platform], check=True, cwd=REPO)
        cmp = filecmp.dircmp(tmp_path / "wheel" / platform, tmp_path / "tree" / platform)
        assert_same(cmp)


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
