"""The revision kept on the data volume (deploy/kept.py) and bootstrap's deploying it on a host
that serves no release (converge/release.py), on this machine: the agent's root and the app root
in tmp_path, real bundles through lifecycle.deploy. The volume's mount is the host test's
(test_https.py); here `kept.where` is pointed at a tmp directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from bingo_host.config import Deploy
from bingo_host.config_file import load_config_text
from bingo_host.converge import release
from bingo_host.deploy import BundleError, DeployError, agent, kept, record
from tests.revisions import required, revision_tree, sign_tree
from tests.kms import new_key

GROUP_ID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"


@pytest.fixture
def agent_dir(tmp_path, monkeypatch):
    conf = tmp_path / "codedeployagent.yml"
    conf.write_text(f":root_dir: '{tmp_path / 'agent-root'}'\n")
    monkeypatch.setattr(agent, "CONFIG", str(conf))
    monkeypatch.setattr(record, "STATE_FILE", str(tmp_path / "deploy.json"))
    return tmp_path / "agent-root"


def deployed(root: Path, deployment_id: str, content: bytes) -> dict:
    """A deployment's bundle file where the agent puts it; the hook environment naming it."""
    d = root / GROUP_ID / deployment_id
    d.mkdir(parents=True)
    (d / "bundle.tar").write_bytes(content)
    return {"DEPLOYMENT_ID": deployment_id, "DEPLOYMENT_GROUP_ID": GROUP_ID,
            "APPLICATION_NAME": "bingo", "DEPLOYMENT_GROUP_NAME": "bingo",
            "BUNDLE_BUCKET": "deploy-bucket", "BUNDLE_KEY": "musicbingo-prod.zip", "BUNDLE_VERSION": "v1"}


def test_keep_copies_the_bundle_and_names_it_last(agent_dir, tmp_path):
    where = tmp_path / "vol" / "bingo-host" / "release"
    said = kept.keep(str(where), deployed(agent_dir, "d-AAAAAAAAA", b"first"))
    assert said.startswith("kept revision-") and oct(where.stat().st_mode & 0o777) == "0o700"
    rec = kept.read_json(str(where / kept.RECORD))
    assert rec["deployment_id"] == "d-AAAAAAAAA" and rec["deployment_group_id"] == GROUP_ID
    assert rec["bundle"] == {"BUNDLE_BUCKET": "deploy-bucket", "BUNDLE_KEY": "musicbingo-prod.zip",
                             "BUNDLE_VERSION": "v1"}
    assert (where / rec["file"]).read_bytes() == b"first"
    assert {p.stat().st_mode & 0o777 for p in where.iterdir()} == {0o600}
    kept.keep(str(where), deployed(agent_dir, "d-BBBBBBBBB", b"second"))
    rec2 = kept.read_json(str(where / kept.RECORD))
    assert sorted(p.name for p in where.iterdir()) == sorted([kept.RECORD, rec2["file"]])  # the old one went
    inode = (where / rec2["file"]).stat().st_ino
    kept.keep(str(where), deployed(agent_dir, "d-CCCCCCCCC", b"second"))  # the same bundle again
    assert (where / rec2["file"]).stat().st_ino == inode  # not copied again
    assert kept.read_json(str(where / kept.RECORD))["deployment_id"] == "d-CCCCCCCCC"


def test_a_directory_revision_is_not_kept_and_drops_the_older_one(agent_dir, tmp_path):
    where = tmp_path / "release"
    kept.keep(str(where), deployed(agent_dir, "d-AAAAAAAAA", b"first"))
    env = deployed(agent_dir, "d-BBBBBBBBB", b"")
    os.unlink(agent_dir / GROUP_ID / "d-BBBBBBBBB" / "bundle.tar")
    assert "a directory revision" in kept.keep(str(where), env)
    assert kept.wanted(str(where), str(tmp_path / "app"))[0] is None


def app_root(tmp_path: Path, serving: str | None) -> str:
    root = tmp_path / "app"
    root.mkdir(exist_ok=True)
    if serving:
        os.symlink(f"releases/{serving}", root / "current")
    return str(root)


def test_wanted_only_when_no_release_serves(agent_dir, tmp_path):
    where = tmp_path / "release"
    assert "deploy.keep_release off" in kept.wanted(None, app_root(tmp_path, None))[1]
    assert "no revision is kept" in kept.wanted(str(where), app_root(tmp_path, None))[1]
    kept.keep(str(where), deployed(agent_dir, "d-AAAAAAAAA", b"first"))
    rev, why = kept.wanted(str(where), app_root(tmp_path, "placeholder"))
    assert rev["path"] == str(where / rev["file"]) and "deploying the kept revision of d-AAAAAAAAA" in why
    other = tmp_path / "other"
    other.mkdir()
    assert kept.wanted(str(where), app_root(other, "d-ZZZZZZZZZ")) == (None, "serving release d-ZZZZZZZZZ")


def test_a_kept_file_that_does_not_match_its_record_is_an_error(agent_dir, tmp_path):
    where = tmp_path / "release"
    kept.keep(str(where), deployed(agent_dir, "d-AAAAAAAAA", b"first"))
    rec = kept.read_json(str(where / kept.RECORD))
    (where / rec["file"]).write_bytes(b"changed")
    with pytest.raises(DeployError, match="does not match the sha256"):
        kept.wanted(str(where), app_root(tmp_path, "placeholder"))


def test_where_is_nothing_unless_asked_for_and_mounted(tmp_path):
    assert kept.where(load_config_text("{}")) is None
    cfg = load_config_text(f"deploy: {{keep_release: true}}\nvolume: {{mountpoint: {tmp_path}/vol}}\n")
    assert cfg.deploy.keep_release and kept.where(cfg) is None  # not a mount point


# -- bootstrap's release part, with real bundles through lifecycle.deploy --

def kept_bundle(tmp_path: Path, agent_dir: Path, marker: Path, key: str | None = None,
                binding: dict | None = None) -> Path:
    """A zip revision whose BeforeInstall hook records its environment in marker, kept as
    ValidateService would keep it; the kept directory."""
    tree = revision_tree(tmp_path / "tree", marker)
    (tree / "hooks" / "stop.sh").write_text(f"#!/bin/sh\nenv > {marker}\n")
    if key:
        sign_tree(tree, key, binding=binding)
    bundle = tmp_path / "rev.zip"
    subprocess.run(["zip", "-qr", str(bundle), "."], cwd=tree, check=True)
    where = tmp_path / "release"
    kept.keep(str(where), deployed(agent_dir, "d-AAAAAAAAA", bundle.read_bytes()))
    return where


def cfg_for(tmp_path: Path, deploy: Deploy):
    return SimpleNamespace(deploy=deploy, app=SimpleNamespace(root=app_root(tmp_path, "placeholder")))


def test_bootstrap_deploys_the_kept_revision_for_its_group(agent_dir, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    where = kept_bundle(tmp_path, agent_dir, marker)
    monkeypatch.setattr(kept, "where", lambda cfg: str(where))
    cfg = cfg_for(tmp_path, Deploy())
    status, detail = release.serve_kept(cfg, dry_run=True)
    assert status == "would change" and "would deploy" in detail and not marker.exists()
    status, detail = release.serve_kept(cfg)
    assert status == "changed" and "first deployed as d-AAAAAAAAA" in detail, detail
    env = dict(line.split("=", 1) for line in marker.read_text().splitlines() if "=" in line)
    assert env["DEPLOYMENT_GROUP_ID"] == GROUP_ID and env["APPLICATION_NAME"] == "bingo"
    assert env["DEPLOYMENT_GROUP_NAME"] == "bingo" and env["DEPLOYMENT_ID"] != "d-AAAAAAAAA"


def test_bootstrap_checks_the_kept_revisions_signature_for_its_group(agent_dir, tmp_path, monkeypatch, kms):
    marker = tmp_path / "ran"
    key = new_key(kms)
    where = kept_bundle(tmp_path, agent_dir, marker, key=key)  # signed for music-bingo/LocalFleet
    monkeypatch.setattr(kept, "where", lambda cfg: str(where))
    with pytest.raises(BundleError, match="signed for application 'music-bingo'"):
        release.serve_kept(cfg_for(tmp_path, required(key)))
    assert not marker.exists()


def test_bootstrap_deploys_a_kept_revision_signed_for_its_group(agent_dir, tmp_path, monkeypatch, kms):
    marker = tmp_path / "ran"
    key = new_key(kms)
    where = kept_bundle(tmp_path, agent_dir, marker, key=key,
                        binding={"application": "bingo", "deployment_group": "bingo"})
    monkeypatch.setattr(kept, "where", lambda cfg: str(where))
    assert release.serve_kept(cfg_for(tmp_path, required(key)))[0] == "changed"
    assert marker.exists()


def test_a_kept_directory_not_roots_alone_is_not_used(agent_dir, tmp_path):
    """The volume's root is MariaDB's account's: a tree it put there, or a link, is refused."""
    where = tmp_path / "vol" / "bingo-host" / "release"
    kept.keep(str(where), deployed(agent_dir, "d-AAAAAAAAA", b"first"))
    serving = app_root(tmp_path, "placeholder")
    os.chown(where.parent, 65534, 65534)
    with pytest.raises(DeployError, match="not a directory of root's that only root may write"):
        kept.wanted(str(where), serving)
    with pytest.raises(DeployError, match="uid 65534"):
        kept.keep(str(where), deployed(agent_dir, "d-BBBBBBBBB", b"second"))
    os.chown(where.parent, 0, 0)
    os.chmod(where, 0o770)
    with pytest.raises(DeployError, match="mode 0770"):
        kept.wanted(str(where), serving)
    os.chmod(where, 0o700)
    os.rename(where, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", where)
    with pytest.raises(DeployError, match="not a directory"):
        kept.wanted(str(where), serving)
    assert kept.wanted(str(tmp_path / "elsewhere"), serving)[0]["deployment_id"] == "d-AAAAAAAAA"
