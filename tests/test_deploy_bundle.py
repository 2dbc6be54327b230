"""`bingo-host bundle` (deterministic revision) and the revision checks `deploy` makes, on this machine."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bingo_host.deploy import BundleError, appspec
from bingo_host.deploy.bundle import build_bundle

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"


@pytest.fixture
def fake_wheel(tmp_path):
    wheel = tmp_path / "bingo_host-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bundle_is_deterministic(tmp_path, fake_wheel):
    a = build_bundle(SAMPLE, tmp_path / "a" / "musicbingo-prod.tar.gz", fake_wheel, echo=lambda s: None)
    # Same inputs at another time, from another copy with other mtimes and modes: same bytes.
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLE, copy)
    for p in copy.rglob("*"):
        os.utime(p, (1_700_000_000, 1_700_000_000))
    os.chmod(copy / "application.py", 0o600)
    b = build_bundle(copy, tmp_path / "b" / "musicbingo-prod.tar.gz", fake_wheel, echo=lambda s: None)
    assert sha256(a) == sha256(b)
    with tarfile.open(a) as tf:
        names = tf.getnames()
        members = tf.getmembers()
    assert names == sorted(names)
    assert {"appspec.yml", "application.py", "requirements.txt", "build/index.html",
            "musicbingo/__init__.py", "hooks/after_install.sh",
            "bingo-host/bingo_host-0.1.0-py3-none-any.whl"} <= set(names)
    assert not any(n.startswith("client/") for n in names)
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 946684800)}
    assert all(m.mode == 0o755 for m in members if m.name.startswith("hooks/"))


def test_bundle_cli_twice_same_sha256(tmp_path, fake_wheel):
    outs = []
    for n in (1, 2):
        out = tmp_path / f"{n}.tar.gz"
        subprocess.run([sys.executable, "-m", "bingo_host", "bundle", "--app", str(SAMPLE), "--out", str(out),
                        "--wheel", str(fake_wheel)], check=True, cwd=REPO, capture_output=True)
        outs.append(sha256(out))
    assert outs[0] == outs[1]


def test_bundle_refuses_an_unbuilt_client(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(SAMPLE, app)
    shutil.rmtree(app / "client")
    with pytest.raises(BundleError, match="client/build/index.html"):
        build_bundle(app, tmp_path / "x.tar.gz", None, echo=lambda s: None)


def test_repo_appspec_and_hooks_are_valid():
    spec = appspec.load(REPO)
    assert [m.destination for m in spec.files] == ["/var/www/music-bingo/staging"]
    assert "ApplicationStop" not in spec.hooks  # nothing to stop: the old release serves until the switch
    assert list(spec.hooks) == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]
    for scripts in spec.hooks.values():
        (script,) = scripts
        assert script.timeout < appspec.DEFAULT_TIMEOUT
        text = (REPO / script.location).read_bytes()
        assert text == b'#!/bin/sh\nexec /usr/local/bin/bingo-host hook "$LIFECYCLE_EVENT"\n'
