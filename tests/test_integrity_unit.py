"""integrity.py on small trees made here (no bundle build): the manifest's format, every check of
check_tree, check_owners and the signature's binding, verify's paths; the KMS ones against moto's
KMS, last (test_integrity.py runs the same checks on the sample app's real bundles)."""

from __future__ import annotations

from bingo_host.digest import sha256_file

import base64
import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from bingo_host.config import Deploy
from bingo_host.deploy import BundleError, DeployError, integrity
from tests.aws_servers import REGION
from tests.kms import new_key  # kms: that plugin's fixture, on moto's KMS


def logged(caplog) -> list[str]:
    """What bingo-host logged in this test."""
    return [r.getMessage() for r in caplog.records]


BINDING = {"application": "app", "deployment_group": "grp", "created": "2026-01-02T03:04:05Z"}


def make_tree(tmp_path: Path) -> Path:
    rev = tmp_path / "rev"
    (rev / "hooks").mkdir(parents=True)
    (rev / "appspec.yml").write_text("version: 0.0\n")
    (rev / "hooks" / "a.sh").write_text("#!/bin/sh\n")
    (rev / "hooks" / "a.sh").chmod(0o755)
    (rev / "big.bin").write_bytes(b"\1" * ((1 << 20) + 7))  # more than one read
    for p in (rev, rev / "hooks"):
        p.chmod(0o755)
    (rev / "appspec.yml").chmod(0o644)
    (rev / "big.bin").chmod(0o600)
    return rev


def write_manifest(rev: Path, key=None, algorithm=None, binding=None) -> bytes:
    files, dirs = [], []
    for p in sorted(rev.rglob("*")):
        rel = p.relative_to(rev).as_posix()
        if rel in (integrity.MANIFEST, integrity.SIGNATURE):
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_dir():
            dirs.append((rel, mode))
        else:
            files.append((rel, hashlib.sha256(p.read_bytes()).hexdigest(), mode))
    data = integrity.manifest(files, dirs, key, algorithm, binding)
    (rev / integrity.MANIFEST).write_bytes(data)
    return data


def test_sha256_file_reads_the_whole_file(tmp_path):
    rev = make_tree(tmp_path)
    assert sha256_file(str(rev / "big.bin")) == hashlib.sha256(b"\1" * ((1 << 20) + 7)).hexdigest()


def test_the_manifest_is_canonical_json_with_every_entrys_type_and_mode():
    data = integrity.manifest([("b", "0" * 64, 0o644), ("a/x", "1" * 64, 0o755)], [("a", 0o750)],
                              "arn:k", "ALG", BINDING)
    assert data.endswith(b"}\n") and data == (json.dumps(json.loads(data), indent=1, sort_keys=True)
                                             + "\n").encode()
    assert json.loads(data) == {
        "schema": 2, "signing_key": "arn:k", "signing_algorithm": "ALG", **BINDING,
        "entries": [{"path": "a", "type": "directory", "mode": "0750"},
                    {"path": "a/x", "type": "file", "mode": "0755", "sha256": "1" * 64},
                    {"path": "b", "type": "file", "mode": "0644", "sha256": "0" * 64}]}
    unsigned = json.loads(integrity.manifest([], [], None, None))
    assert unsigned == {"schema": 2, "signing_key": None, "signing_algorithm": None, "application": None,
                        "deployment_group": None, "created": None, "entries": []}


def test_a_manifest_is_read_back_as_entries(tmp_path):
    rev = make_tree(tmp_path)
    data = write_manifest(rev)
    raw, parsed = integrity.load_manifest(str(rev / integrity.MANIFEST))
    assert raw == data and parsed["doc"] == json.loads(data)
    assert parsed["entries"] == {
        "appspec.yml": ("file", 0o644, hashlib.sha256(b"version: 0.0\n").hexdigest()),
        "big.bin": ("file", 0o600, hashlib.sha256(b"\1" * ((1 << 20) + 7)).hexdigest()),
        "hooks": ("directory", 0o755, None),
        "hooks/a.sh": ("file", 0o755, hashlib.sha256(b"#!/bin/sh\n").hexdigest())}


def test_a_schema_1_manifest_is_read_as_the_same_entries(tmp_path):
    old = {"schema": 1, "files": [{"path": "f", "sha256": "a" * 64, "mode": "0644"}],
           "directories": [{"path": "d", "mode": "0755"}]}
    (tmp_path / "m.json").write_text(json.dumps(old))
    assert integrity.load_manifest(str(tmp_path / "m.json"))[1]["entries"] == {
        "f": ("file", 0o644, "a" * 64), "d": ("directory", 0o755, None)}


@pytest.mark.parametrize("doc, message", [
    ("not json", "Expecting value"),
    ("[]", "object has no attribute 'get'"),
    ({"schema": 3, "entries": []}, "schema 3, not 1 or 2\\)$"),
    ({"schema": "2", "entries": []}, "schema '2', not 1 or 2"),
    ({"entries": []}, "schema None, not 1 or 2"),
    ({"schema": 2}, "'entries'"),
    ({"schema": 1, "files": []}, "'directories'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "link", "mode": "0777"}]}, "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "file", "mode": "644", "sha256": "a" * 64}]},
     "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "file", "mode": "06440", "sha256": "a" * 64}]},
     "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "file", "mode": "0648", "sha256": "a" * 64}]},
     "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "file", "mode": "0644"}]}, "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "file", "mode": "0644", "sha256": "a" * 63}]},
     "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "file", "mode": "0644", "sha256": "g" * 64}]},
     "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "directory", "mode": "0755", "sha256": "a" * 64}]},
     "entry 'x'"),
    ({"schema": 2, "entries": [{"path": "x", "type": "directory", "mode": "0755"},
                               {"path": "x", "type": "directory", "mode": "0755"}]},
     "entry 'x': type, mode or sha256 malformed, or listed twice\\)$"),
    ({"schema": 2, "entries": [{"type": "directory", "mode": "0755"}]}, "'path'"),
    ({"schema": 2, "entries": [{"path": "x", "mode": "0755"}]}, "'type'"),
    ({"schema": 2, "entries": ["x"]}, "string indices must be integers"),
])
def test_a_malformed_manifest_is_one_clear_refusal(tmp_path, doc, message):
    (tmp_path / "m.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(BundleError, match="^bingo-manifest.json: unreadable \\(" + ("" if "schema" in message
                                          or message.startswith("entry") else ".*") + message) as info:
        integrity.load_manifest(str(tmp_path / "m.json"))
    assert info.value.exit_code == 2


def test_a_tree_that_matches_its_manifest_passes(tmp_path):
    rev = make_tree(tmp_path)
    write_manifest(rev)
    (rev / integrity.SIGNATURE).write_text("anything\n")  # neither is listed: both are skipped
    entries = integrity.load_manifest(str(rev / integrity.MANIFEST))[1]["entries"]
    assert integrity.check_tree(str(rev), entries) == 3
    integrity.check_owners(str(rev))


@pytest.mark.parametrize("tamper, message", [
    (lambda r: (r / "new").write_text(""), "^new: a file not in bingo-manifest.json \\(added after"),
    (lambda r: (r / "hooks" / "new").mkdir(), "^hooks/new: a directory not in bingo-manifest.json"),
    (lambda r: (r / "hooks" / "a.sh").unlink(), "^hooks/a.sh: listed in bingo-manifest.json but missing "
                                                "from the revision$"),
    (lambda r: ((r / "appspec.yml").unlink(), (r / "appspec.yml").mkdir()),
     "^appspec.yml: a directory, but bingo-manifest.json lists a file$"),
    (lambda r: ((r / "hooks" / "a.sh").unlink(), (r / "hooks").rmdir(), (r / "hooks").write_text("")),
     "^hooks: a file, but bingo-manifest.json lists a directory$"),
    (lambda r: (r / "hooks" / "a.sh").chmod(0o4755), "^hooks/a.sh: mode 4755, but bingo-manifest.json "
                                                     "says 0755$"),
    (lambda r: (r / "hooks").chmod(0o700), "^hooks: mode 0700, but bingo-manifest.json says 0755$"),
    (lambda r: (r / "big.bin").write_bytes(b"\1" * ((1 << 20) + 6) + b"\2"),
     "^big.bin: its sha256 does not match bingo-manifest.json \\(the file was changed after"),
    (lambda r: (r / "link").symlink_to("appspec.yml"), "^link: not in bingo-manifest.json \\(a symbolic "
                                                       "link or special file; the revision was changed "
                                                       "after it was built\\)$"),
    (lambda r: os.mkfifo(r / "fifo"), "^fifo: not in bingo-manifest.json"),
])
def test_every_difference_from_the_manifest_is_refused(tmp_path, tamper, message):
    rev = make_tree(tmp_path)
    write_manifest(rev)
    entries = integrity.load_manifest(str(rev / integrity.MANIFEST))[1]["entries"]
    tamper(rev)
    with pytest.raises(BundleError, match=message):
        integrity.check_tree(str(rev), entries)


@pytest.mark.parametrize("path, owner, message", [
    ("hooks/a.sh", (1234, 0), "^hooks/a.sh: owned by uid 1234 gid 0, not root \\(the archive's owners "
                              "were applied when it was unpacked\\)$"),
    ("hooks/a.sh", (0, 1234), "^hooks/a.sh: owned by uid 0 gid 1234, not root"),
    ("hooks", (0, 5), "^hooks: owned by uid 0 gid 5"),
    (integrity.MANIFEST, (1234, 1234), None),  # the manifest and signature are not the revision's
])
def test_every_entry_must_be_roots(tmp_path, path, owner, message):
    rev = make_tree(tmp_path)
    write_manifest(rev)
    os.lchown(rev / path, *owner)
    if message is None:
        integrity.check_owners(str(rev))
    else:
        with pytest.raises(BundleError, match=message):
            integrity.check_owners(str(rev))


def doc(**changes) -> dict:
    return {"schema": 2, **BINDING, **changes}


@pytest.mark.parametrize("d, application, group, message", [
    (doc(schema=1), "app", "grp", "^bingo-manifest.json is schema 1: it binds no application, deployment "
                                  "group or creation time; rebuild the revision with this bingo-host "
                                  "\\(`bingo-host bundle --sign-key KEY --application APP "
                                  "--deployment-group GROUP`\\)$"),
    (doc(), "other", "grp", "^the revision is signed for application 'app', but this deployment's is "
                            "'other': refusing to install it$"),
    (doc(), "app", "other", "^the revision is signed for deployment_group 'grp', but this deployment's "
                            "is 'other'"),
    (doc(application=""), "", "grp", "signed for application '', but this deployment's is ''"),
    (doc(deployment_group=""), "app", "", "signed for deployment_group ''"),
    (doc(), None, "grp", "signed for application 'app', but this deployment's is None"),
    (doc(created="2026-01-02 03:04:05Z"), "app", "grp",
     "^bingo-manifest.json: created '2026-01-02 03:04:05Z' is not a time like 2026-01-31T12:00:00Z$"),
    (doc(created="2026-01-02T03:04:05Z "), "app", "grp", "is not a time like"),
    (doc(created=20260102), "app", "grp", "created 20260102 is not a time like"),
    (doc(created=None), "app", "grp", "created None is not a time like"),
])
def test_the_binding_is_checked(d, application, group, message):
    with pytest.raises(BundleError, match=message):
        integrity._check_binding(d, application, group)


def test_a_good_binding_passes():
    integrity._check_binding(doc(), "app", "grp")


def test_verify_without_a_manifest(tmp_path, caplog):
    rev = make_tree(tmp_path)
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    assert integrity.verify(str(rev), Deploy()) == {
        "signed": False, "manifest_sha256": None, "application": None, "deployment_group": None,
        "created": None}
    assert logged(caplog) == ["integrity: the revision has no bingo-manifest.json; not checked "
                              "(deploy.require_signature is off)"]
    with pytest.raises(BundleError, match="^the revision has no bingo-manifest.json: it is unsigned, and "
                                          "this host's deploy.require_signature is on \\(build it with "
                                          "`bingo-host bundle --sign-key KEY`\\)$"):
        integrity.verify(str(rev), Deploy(True, "arn:aws:kms:eu-west-1:123456789012:key/k"))
    os.chown(rev / "appspec.yml", 1234, 0)
    with pytest.raises(BundleError, match="appspec.yml: owned by uid 1234"):
        integrity.verify(str(rev), Deploy())


def test_verify_an_unsigned_manifest(tmp_path, caplog):
    rev = make_tree(tmp_path)
    data = write_manifest(rev, binding=BINDING)  # unsigned: its binding means nothing
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    assert integrity.verify(str(rev), Deploy()) == {
        "signed": False, "manifest_sha256": hashlib.sha256(data).hexdigest(), "application": None,
        "deployment_group": None, "created": None}
    assert logged(caplog) == ["integrity: 3 files match bingo-manifest.json (signature not checked: "
                              "deploy.require_signature is off)"]
    with pytest.raises(BundleError, match="^the revision has no bingo-manifest.sig: it is unsigned, and "
                                          "this host's deploy.require_signature is on \\(build it with "
                                          "`bingo-host bundle --sign-key KEY`\\)$"):
        integrity.verify(str(rev), Deploy(True, "arn:aws:kms:eu-west-1:123456789012:key/k"))
    (rev / "big.bin").chmod(0o644)
    with pytest.raises(BundleError, match="big.bin: mode 0644"):
        integrity.verify(str(rev), Deploy())


def test_aws_errors_name_the_missing_permission():
    from botocore.exceptions import ClientError, EndpointConnectionError

    arn = "arn:aws:kms:eu-west-1:123456789012:key/k"
    for code in ("AccessDeniedException", "UnauthorizedOperation"):
        err = integrity._aws_error("verify", arn, ClientError({"Error": {"Code": code}}, "Verify"), "kms:Verify")
        assert str(err) == f"cannot verify with {arn}: {code} (needs kms:Verify on it)"
        assert isinstance(err, DeployError)
    for response in ({"Error": {}}, {}):  # an answer botocore could not parse has no Error at all
        err = integrity._aws_error("sign", arn, ClientError(response, "Sign"), "kms:Sign")
        assert str(err) == f"cannot sign with {arn}: "
    err = integrity._aws_error("sign", arn, EndpointConnectionError(endpoint_url="https://kms"), "kms:Sign")
    assert str(err) == f'cannot sign with {arn}: Could not connect to the endpoint URL: "https://kms"'


def test_the_signed_message_and_algorithms_are_fixed():
    data = b"{}\n"
    assert integrity.signed_message(data) == \
        b"bingo-host revision manifest v1 sha256:" + hashlib.sha256(data).hexdigest().encode()
    assert integrity.ALGORITHMS == ("RSASSA_PKCS1_V1_5_SHA_256", "ECDSA_SHA_256", "RSASSA_PSS_SHA_256")
    assert (integrity.MANIFEST, integrity.SIGNATURE, integrity.SCHEMA) == \
        ("bingo-manifest.json", "bingo-manifest.sig", 2)


# -- against moto's KMS --

def signed_tree(tmp_path, key, binding=BINDING) -> Path:
    rev = make_tree(tmp_path)
    algorithm = integrity.signing_algorithm(key)
    data = write_manifest(rev, key, algorithm, binding)
    (rev / integrity.SIGNATURE).write_bytes(integrity.sign(data, key, algorithm))
    return rev


def test_kms_clients_use_the_keys_region(kms):
    assert integrity._kms("arn:aws:kms:eu-west-3:123456789012:key/x").meta.region_name == "eu-west-3"
    assert integrity._kms("alias/x").meta.region_name == REGION
    config = integrity._kms("alias/x").meta.config
    assert (config.retries["mode"], config.connect_timeout, config.read_timeout) == ("standard", 5, 15)


def test_verify_a_signed_tree(tmp_path, kms, caplog):
    key = new_key(kms)
    rev = signed_tree(tmp_path, key)
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    assert integrity.verify(str(rev), Deploy(True, key), "app", "grp") == {
        "signed": True, "application": "app", "deployment_group": "grp", "created": BINDING["created"],
        "manifest_sha256": hashlib.sha256((rev / integrity.MANIFEST).read_bytes()).hexdigest()}
    assert logged(caplog) == [f"integrity: 3 files match bingo-manifest.json, signed with {key} for app/grp, "
                              f"created {BINDING['created']}"]
    assert integrity.sign(b"x", key, "RSASSA_PKCS1_V1_5_SHA_256").endswith(b"\n")
    with pytest.raises(BundleError, match="signed for application 'app', but this deployment's is 'x'"):
        integrity.verify(str(rev), Deploy(True, key), "x", "grp")
    (rev / "hooks").chmod(0o700)  # the tree is checked after the signature and the binding
    with pytest.raises(BundleError, match="hooks: mode 0700"):
        integrity.verify(str(rev), Deploy(True, key), "app", "grp")


@pytest.mark.parametrize("change, message", [
    (lambda rev, key, other: (rev / integrity.SIGNATURE).write_bytes(
        integrity.sign((rev / integrity.MANIFEST).read_bytes(), other, "RSASSA_PKCS1_V1_5_SHA_256")),
     "^the revision's signature does not verify with deploy.signing_key {key} \\(signed with {key}, or the "
     "manifest was changed\\): refusing to install it$"),
    (lambda rev, key, other: (rev / integrity.SIGNATURE).write_bytes(base64.b64encode(b"\0" * 256)),
     "signature does not verify"),
    (lambda rev, key, other: (rev / integrity.SIGNATURE).write_bytes(b"!!!\n"),
     "^bingo-manifest.sig: not a base64 signature \\("),
    (lambda rev, key, other: (rev / integrity.SIGNATURE).write_bytes(b"\xff\xfe\n"),  # read as bytes, not text
     "^bingo-manifest.sig: not a base64 signature \\(Only base64 data is allowed\\)$"),
    (lambda rev, key, other: (rev / integrity.MANIFEST).write_text(
        (rev / integrity.MANIFEST).read_text().replace('"RSASSA_PKCS1_V1_5_SHA_256"', '"MD5"')),
     "^bingo-manifest.json names signing algorithm 'MD5', not one of RSASSA_PKCS1_V1_5_SHA_256, "
     "ECDSA_SHA_256, RSASSA_PSS_SHA_256$"),
    (lambda rev, key, other: (rev / integrity.MANIFEST).write_text(
        (rev / integrity.MANIFEST).read_text().replace('"signing_key": "', '"signing_key": "x')),
     "signature does not verify with deploy.signing_key {key} \\(signed with x{key}"),
    (lambda rev, key, other: (rev / integrity.MANIFEST).write_text(
        (rev / integrity.MANIFEST).read_text().replace(f'"signing_key": "{key}"', '"signing_key": null')),
     "\\(signed with another key, or the manifest was changed\\)"),
])
def test_a_bad_signature_is_refused(tmp_path, kms, change, message):
    key, other = new_key(kms), new_key(kms, fresh=True)
    rev = signed_tree(tmp_path, key)
    change(rev, key, other)
    with pytest.raises(BundleError, match=message.format(key=key)) as info:
        integrity.verify(str(rev), Deploy(True, key), "app", "grp")
    assert info.value.exit_code == 2


def test_kms_failures_are_failures(tmp_path, kms, monkeypatch):
    key = new_key(kms)
    rev = signed_tree(tmp_path, key)
    gone = key.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(DeployError, match=f"^cannot verify the revision's signature with {gone}: "
                                          "NotFoundException$"):
        integrity.verify(str(rev), Deploy(True, gone), "app", "grp")
    with pytest.raises(DeployError, match=f"^cannot describe the signing key with {gone}: NotFound"):
        integrity.signing_algorithm(gone)
    with pytest.raises(DeployError, match=f"^cannot sign the manifest with {gone}: NotFound"):
        integrity.sign(b"x", gone, "RSASSA_PKCS1_V1_5_SHA_256")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for call in (lambda: integrity.verify(str(rev), Deploy(True, key), "app", "grp"),
                 lambda: integrity.signing_algorithm(key), lambda: integrity.sign(b"x", key, "ALG")):
        with pytest.raises(DeployError, match=f"^cannot (verify the revision's signature|describe the "
                                              f"signing key|sign the manifest) with {key}: Could not connect"):
            call()


def test_the_signing_algorithm_is_the_first_the_key_supports(kms, monkeypatch):
    key = new_key(kms)
    assert integrity.signing_algorithm(key) == "RSASSA_PKCS1_V1_5_SHA_256"
    assert integrity.signing_algorithm(new_key(kms, "ECC_NIST_P256")) == "ECDSA_SHA_256"
    real = integrity._kms

    def answering(metadata):
        def client(arn):
            c = real(arn)
            c.describe_key = lambda **kw: {"KeyMetadata": metadata}
            return c
        return client

    monkeypatch.setattr(integrity, "_kms", answering(
        {"KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": ["RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_256"]}))
    assert integrity.signing_algorithm(key) == "RSASSA_PSS_SHA_256"
    monkeypatch.setattr(integrity, "_kms", answering({"KeyUsage": "SIGN_VERIFY",
                                                      "SigningAlgorithms": ["SM2DSA", "FOO"]}))
    with pytest.raises(BundleError, match=f"^--sign-key {key}: supports SM2DSA, FOO, none of "
                                          "RSASSA_PKCS1_V1_5_SHA_256, ECDSA_SHA_256, RSASSA_PSS_SHA_256 "
                                          "\\(use an RSA or ECC_NIST_P256 key\\)$"):
        integrity.signing_algorithm(key)
    monkeypatch.setattr(integrity, "_kms", answering({"KeyUsage": "SIGN_VERIFY"}))
    with pytest.raises(BundleError, match="supports , none of"):
        integrity.signing_algorithm(key)
    monkeypatch.setattr(integrity, "_kms", answering({"KeyUsage": "ENCRYPT_DECRYPT"}))
    with pytest.raises(BundleError, match=f"^--sign-key {key}: not an asymmetric signing key \\(its "
                                          "KeyUsage is ENCRYPT_DECRYPT; create one with KeyUsage "
                                          "SIGN_VERIFY\\)$"):
        integrity.signing_algorithm(key)


def test_a_denied_kms_call_names_the_permission(tmp_path, kms, monkeypatch):
    """What IAM denies (moto allows everything, so the client is made to answer as KMS does)."""
    from botocore.exceptions import ClientError

    key = new_key(kms)
    rev = signed_tree(tmp_path, key)
    real = integrity._kms

    def denied(arn):
        c = real(arn)
        for name in ("describe_key", "sign", "verify"):
            setattr(c, name, lambda **kw: (_ for _ in ()).throw(
                ClientError({"Error": {"Code": "AccessDeniedException"}}, "X")))
        return c

    monkeypatch.setattr(integrity, "_kms", denied)
    with pytest.raises(DeployError, match=f"^cannot describe the signing key with {key}: AccessDeniedException "
                                          "\\(needs kms:DescribeKey on it\\)$"):
        integrity.signing_algorithm(key)
    with pytest.raises(DeployError, match="^cannot sign the manifest with .*\\(needs kms:Sign on it\\)$"):
        integrity.sign(b"x", key, "RSASSA_PKCS1_V1_5_SHA_256")
    with pytest.raises(DeployError, match="^cannot verify the revision's signature with .*\\(needs kms:Verify "
                                          "on it\\)$"):
        integrity.verify(str(rev), Deploy(True, key), "app", "grp")


@pytest.mark.parametrize("code, refused", [
    ("KMSInvalidSignatureException", True),  # what real KMS answers for a bad signature
    ("InvalidKeyUsageException", True),
    ("ValidationException", True),
    ("DisabledException", False),
    (None, False),
])
def test_real_kms_errors_for_a_bad_signature_are_refusals(tmp_path, kms, monkeypatch, code, refused):
    """moto answers SignatureValid false where KMS raises: both are a refusal (exit 2); any other
    error is a failure to check (exit 1)."""
    from botocore.exceptions import ClientError

    key = new_key(kms)
    rev = signed_tree(tmp_path, key)
    real = integrity._kms

    def raising(arn):
        c = real(arn)
        error = {"Code": code} if code else {}
        c.verify = lambda **kw: (_ for _ in ()).throw(ClientError({"Error": error}, "Verify"))
        return c

    monkeypatch.setattr(integrity, "_kms", raising)
    with pytest.raises(BundleError if refused else DeployError) as info:
        integrity.verify(str(rev), Deploy(True, key), "app", "grp")
    if refused:
        assert str(info.value).startswith(f"the revision's signature does not verify with deploy.signing_key {key}")
    else:
        assert str(info.value) == f"cannot verify the revision's signature with {key}: {code or ''}"


def test_kms_is_asked_with_the_raw_message(tmp_path, kms, monkeypatch):
    """MessageType RAW on both sides (moto ignores it; real KMS would read a DIGEST message as the
    hash itself): the recorded requests say so."""
    key = new_key(kms)
    rev = signed_tree(tmp_path, key)
    real, asked = integrity._kms, []

    def recording(arn):
        c = real(arn)
        for name in ("sign", "verify"):
            call = getattr(c, name)
            setattr(c, name, lambda _call=call, _name=name, **kw: asked.append((_name, kw["MessageType"])) or _call(**kw))
        return c

    monkeypatch.setattr(integrity, "_kms", recording)
    integrity.sign(b"x", key, "RSASSA_PKCS1_V1_5_SHA_256")
    integrity.verify(str(rev), Deploy(True, key), "app", "grp")
    assert asked == [("sign", "RAW"), ("verify", "RAW")]
