"""Small signed revisions and the codedeploy agent's root in tmp_path, for the tests of the checks
before a revision's first script (integrity, freshness, tar headers), as a pytest plugin: the
`agent_root` fixture, `revision_tree`, `sign_tree` and `required`."""

from __future__ import annotations

from bingo_host.digest import sha256_file

import stat
from pathlib import Path

import pytest

from bingo_host.config import Deploy
from bingo_host.deploy import agent, integrity, lifecycle, record


@pytest.fixture
def agent_root(tmp_path, monkeypatch):
    conf = tmp_path / "codedeployagent.yml"
    root = tmp_path / "agent-root"
    conf.write_text(f":root_dir: '{root}'\n")
    monkeypatch.setattr(agent, "CONFIG", str(conf))
    monkeypatch.setattr(record, "STATE_FILE", str(tmp_path / "deploy.json"))
    return root


def required(key) -> Deploy:
    return Deploy(require_signature=True, signing_key=key)


def revision_tree(path: Path, marker: Path) -> Path:
    """An unsigned revision at path whose BeforeInstall script touches marker."""
    (path / "hooks").mkdir(parents=True)
    (path / "hooks" / "stop.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (path / "hooks" / "stop.sh").chmod(0o755)
    (path / "appspec.yml").write_text("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n"
                                      "    - location: hooks/stop.sh\n")
    return path


def sign_tree(tree: Path, key: str, created: str = "2026-01-01T00:00:00Z",
              binding: dict | None = None) -> None:
    """Sign tree for `bingo-host deploy`'s defaults (music-bingo, LocalFleet) unless binding says."""
    files, dirs = [], []
    for p in sorted(tree.rglob("*")):
        rel, mode = p.relative_to(tree).as_posix(), stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            dirs.append((rel, mode))
        else:
            files.append((rel, sha256_file(str(p)), mode))
    algorithm = integrity.signing_algorithm(key)
    binding = binding or {"application": lifecycle.DEFAULT_APPLICATION_NAME,
                          "deployment_group": lifecycle.DEFAULT_GROUP_NAME}
    data = integrity.manifest(files, dirs, key, algorithm, dict(binding, created=created))
    (tree / integrity.MANIFEST).write_bytes(data)
    (tree / integrity.SIGNATURE).write_bytes(integrity.sign(data, key, algorithm))
