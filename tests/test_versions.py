"""PEP 440 ordering (bingo_host/versions.py, checked against packaging), the version of an
installed bingo-host, and install_floor's decision to keep a newer installed bingo-host."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from packaging.version import Version

from bingo_host import install_floor, layout, versions

ORDERED = ["1.0.dev0", "1.0a1.dev2", "1.0a1", "1.0a1.post1", "1.0b1", "1.0rc1", "1.0", "1.0+abc",
           "1.0+abc.5", "1.0+5", "1.0.post1.dev3", "1.0.post1", "1.0.1", "1.10", "1!0.1"]
SPELLINGS = ["1.0.0", "1.0-alpha1", "1.0.preview2", "1.0-1", "1.0rev3", "v1.1", "1.0.post", "1.0c2"]


def test_the_order_is_packagings():
    assert ORDERED == sorted(ORDERED, key=Version)
    for a, b in itertools.permutations(ORDERED + SPELLINGS, 2):
        assert (versions.key(a) < versions.key(b)) == (Version(a) < Version(b)), (a, b)
        assert (versions.key(a) == versions.key(b)) == (Version(a) == Version(b)), (a, b)


@pytest.mark.parametrize("bad", ["", "1.0 beta", "one", "1..0", "1.0+"])
def test_a_non_version_is_refused(bad):
    with pytest.raises(ValueError, match="not a PEP 440 version"):
        versions.key(bad)


def test_of_wheel():
    assert versions.of_wheel("/x/bingo_host-0.2.0rc1-py3-none-any.whl") == "0.2.0rc1"
    with pytest.raises(ValueError):
        versions.of_wheel("/x/bingo_host.tar.gz")


def fake_install(root: Path, version: str) -> Path:
    """A virtualenv's layout as pip leaves it: the script and the distribution's metadata."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "bingo-host").write_text("#!/bin/false\n")
    (root / "bin" / "python").symlink_to("/bin/false")
    meta = root / "lib" / "python3.11" / "site-packages" / f"bingo_host-{version}.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: bingo-host\nVersion: {version}\n\nVersion: 9\n")
    return root / "bin" / "bingo-host"


def test_installed_reads_the_version_through_the_link(tmp_path):
    script = fake_install(tmp_path / "venv-0.3.0", "0.3.0")
    (tmp_path / "link").symlink_to(script)
    assert versions.installed(str(tmp_path / "link")) == "0.3.0"
    assert versions.installed(str(tmp_path / "nothing")) is None


@pytest.mark.parametrize("stack, kept", [("0.3.0rc1", True), ("0.3.0", True), ("0.3.0.post1", False)])
def test_the_stacks_wheel_is_a_floor(tmp_path, monkeypatch, stack, kept):
    """A bundle put 0.3.0 behind the link, the venv cfn-init installs into holds 0.1.0: a wheel
    that is not newer than 0.3.0 is kept out (nothing runs); a newer one goes on to pip."""
    script = fake_install(tmp_path / "venv-0.3.0", "0.3.0")
    fake_install(tmp_path / "venv", "0.1.0")
    (tmp_path / "link").symlink_to(script)
    monkeypatch.setattr(layout, "BIN", str(tmp_path / "link"))
    ran = []
    monkeypatch.setattr(install_floor, "pip_install", lambda *args: ran.append(args))
    said = install_floor.install(f"/w/bingo_host-{stack}-py3-none-any.whl", str(tmp_path / "venv"))
    if kept:
        assert not ran and said.startswith("bingo-host 0.3.0 is installed")
    else:
        assert ran == [(f"{tmp_path}/venv/bin/python", f"/w/bingo_host-{stack}-py3-none-any.whl")]


@pytest.mark.parametrize("linked, handed_over, runs", [("0.3.0", "", True), ("0.0.1", "", False),
                                                      ("0.3.0", "0.3.0", False)])
def test_an_older_copy_hands_over_to_the_newer_linked_one_once(tmp_path, monkeypatch, linked,
                                                               handed_over, runs):
    """bootstrap started from an older copy (cfn-init's venv) re-runs itself with the linked
    newer one; never twice (the newer one sees the mark), never to an older one."""
    (tmp_path / "link").symlink_to(fake_install(tmp_path / "venv", linked))
    monkeypatch.setattr(layout, "BIN", str(tmp_path / "link"))
    monkeypatch.setattr(install_floor, "__version__", "0.1.0")
    monkeypatch.setenv(install_floor.HANDED_OVER, handed_over)
    monkeypatch.setattr("sys.argv", ["/opt/bingo-host/venv/bin/bingo-host", "--debug", "bootstrap"])
    execs = []
    monkeypatch.setattr(install_floor.os, "execv", lambda *args: execs.append(args))
    install_floor.defer_to_newer()
    assert execs == ([(str(tmp_path / "link"), [str(tmp_path / "link"), "--debug", "bootstrap"])] if runs else [])
