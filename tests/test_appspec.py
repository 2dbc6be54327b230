"""appspec.yml validation: bad revisions are refused (exit 2) before anything changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bingo_host.deploy import BundleError, appspec

HOOK = b'#!/bin/sh\nexec /usr/local/bin/bingo-host hook "$LIFECYCLE_EVENT"\n'
GOOD = """\
version: 0.0
os: linux
files:
  - source: /
    destination: /var/www/music-bingo/staging
hooks:
  AfterInstall:
    - location: hooks/after_install.sh
      timeout: 600
      runas: root
"""


def bundle(tmp_path: Path, spec: str = GOOD, hook: bytes = HOOK, mode: int = 0o755) -> Path:
    (tmp_path / "hooks").mkdir(exist_ok=True)
    (tmp_path / "appspec.yml").write_text(spec)
    script = tmp_path / "hooks" / "after_install.sh"
    script.write_bytes(hook)
    os.chmod(script, mode)
    return tmp_path


def test_good_appspec(tmp_path):
    spec = appspec.load(bundle(tmp_path))
    assert spec.file_exists_behavior == "DISALLOW"
    assert spec.files == (appspec.FileMapping("", "/var/www/music-bingo/staging"),)
    assert spec.hooks["AfterInstall"] == (appspec.Script("AfterInstall", "hooks/after_install.sh", 600, "root"),)


@pytest.mark.parametrize("spec, hook, mode, message", [
    (GOOD, HOOK.replace(b"\n", b"\r\n"), 0o755, "CRLF line endings"),
    (GOOD, HOOK, 0o644, "not executable"),
    (GOOD, b"echo hi\n", 0o755, "no #! line"),
    (GOOD.replace("AfterInstall:", "AfterInstal:"), HOOK, 0o755, "unknown lifecycle event 'AfterInstal'"),
    (GOOD.replace("AfterInstall:", "Install:"), HOOK, 0o755, "the agent's own step"),
    (GOOD.replace("hooks/after_install.sh", "hooks/missing.sh"), HOOK, 0o755, "script not found"),
    (GOOD.replace("hooks/after_install.sh", "../../etc/passwd"), HOOK, 0o755, "outside the bundle"),
    (GOOD.replace("source: /", "source: ../"), HOOK, 0o755, "outside the bundle"),
    (GOOD.replace("timeout: 600", "timeout: 7200"), HOOK, 0o755, "timeout must be"),
    (GOOD.replace("runas: root", "runas: no-such-user-x"), HOOK, 0o755, "does not exist"),
    (GOOD.replace("version: 0.0", "version: 1.0"), HOOK, 0o755, "version must be 0.0"),
    (GOOD + "file_exists_behavior: CLOBBER\n", HOOK, 0o755, "file_exists_behavior"),
    (GOOD.replace("\n", "\r\n"), HOOK, 0o755, "appspec.yml: CRLF"),
])
def test_bad_revisions_are_refused(tmp_path, spec, hook, mode, message):
    with pytest.raises(BundleError, match=message) as info:
        appspec.load(bundle(tmp_path, spec, hook, mode))
    assert info.value.exit_code == 2


def test_no_appspec(tmp_path):
    with pytest.raises(BundleError, match="no appspec.yml"):
        appspec.load(tmp_path)


def test_symlinked_hook_escaping_the_bundle_is_refused(tmp_path):
    root = bundle(tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path)
    os.unlink(root / "hooks" / "after_install.sh")
    os.symlink("/bin/true", root / "hooks" / "after_install.sh")
    with pytest.raises(BundleError, match="outside the bundle"):
        appspec.load(root)
