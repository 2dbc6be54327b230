"""The revision's manifest and its KMS signature: what a host checks before it runs anything from it.

bingo-manifest.json (schema 2) lists every entry's path, type, mode and sha256; signed, it also
binds the revision to a CodeDeploy application, deployment group and `created` time.
bingo-manifest.sig is a KMS signature (MessageType RAW, so KMS and moto compute the same) over
SIGNED_PREFIX + the manifest's sha256; the key never leaves KMS and a host verifies only with its
own deploy.signing_key, never one the bundle names. A revision holds no symbolic links: the
manifest has no type for them, so each is refused rather than being one more path root might
follow. What is checked when, and what that does not guarantee: the README's "Revisions:
unpacked safely, signed".
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat

from botocore.exceptions import BotoCoreError, ClientError

from ..digest import sha256_file
from . import BundleError, DeployError

log = logging.getLogger(__name__)

MANIFEST = "bingo-manifest.json"
SIGNATURE = "bingo-manifest.sig"
SCHEMA = 2
CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
BINDING = ("application", "deployment_group", "created")
SIGNED_PREFIX = b"bingo-host revision manifest v1 sha256:"
#: Preferred first: PKCS#1 v1.5 signatures are deterministic, so a signed bundle stays
#: reproducible byte for byte; ECDSA for elliptic-curve keys.
ALGORITHMS = ("RSASSA_PKCS1_V1_5_SHA_256", "ECDSA_SHA_256", "RSASSA_PSS_SHA_256")


def manifest(files: list[tuple[str, str, int]], dirs: list[tuple[str, int]], key_arn: str | None,
             algorithm: str | None, binding: dict | None = None) -> bytes:
    """The manifest's bytes: files (path, sha256, mode), dirs (path, mode), binding (application,
    deployment_group, created: what a signature binds); sorted, canonical."""
    entries = [{"path": p, "type": "directory", "mode": f"{m:04o}"} for p, m in dirs] + \
        [{"path": p, "type": "file", "mode": f"{m:04o}", "sha256": h} for p, h, m in files]
    doc = {"schema": SCHEMA, "signing_key": key_arn, "signing_algorithm": algorithm,
           **{k: (binding or {}).get(k) for k in BINDING},
           "entries": sorted(entries, key=lambda e: e["path"])}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def signed_message(manifest_bytes: bytes) -> bytes:
    return SIGNED_PREFIX + hashlib.sha256(manifest_bytes).hexdigest().encode()


def _kms(key_arn: str):
    # Imported here: every `bingo-host hook` starts ~150 ms sooner without boto3 (-X importtime).
    import boto3
    from botocore.config import Config

    region = key_arn.split(":")[3] if key_arn.startswith("arn:") else None
    return boto3.client("kms", region_name=region,
                        config=Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=15))


def _aws_error(what: str, key_arn: str, exc, action: str) -> DeployError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        hint = f" (needs {action} on it)" if "Denied" in code or "Unauthorized" in code else ""
        return DeployError(f"cannot {what} with {key_arn}: {code}{hint}")
    return DeployError(f"cannot {what} with {key_arn}: {exc}")


def signing_algorithm(key_arn: str) -> str:
    """The algorithm to sign with: the first of ALGORITHMS the key supports."""
    try:
        client = _kms(key_arn)
        meta = client.describe_key(KeyId=key_arn)["KeyMetadata"]
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error("describe the signing key", key_arn, exc, "kms:DescribeKey") from None
    if meta.get("KeyUsage") != "SIGN_VERIFY":
        raise BundleError(f"--sign-key {key_arn}: not an asymmetric signing key (its KeyUsage is "
                          f"{meta.get('KeyUsage')}; create one with KeyUsage SIGN_VERIFY)")
    supported = meta.get("SigningAlgorithms") or []
    for algorithm in ALGORITHMS:
        if algorithm in supported:
            return algorithm
    raise BundleError(f"--sign-key {key_arn}: supports {', '.join(supported)}, none of "
                      f"{', '.join(ALGORITHMS)} (use an RSA or ECC_NIST_P256 key)")


def sign(manifest_bytes: bytes, key_arn: str, algorithm: str) -> bytes:
    """bingo-manifest.sig's content: the base64 of KMS's signature, one line."""
    try:
        client = _kms(key_arn)
        answer = client.sign(KeyId=key_arn, Message=signed_message(manifest_bytes),
                                    MessageType="RAW", SigningAlgorithm=algorithm)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error("sign the manifest", key_arn, exc, "kms:Sign") from None
    return base64.b64encode(answer["Signature"]) + b"\n"


def _verify_signature(manifest_bytes: bytes, doc: dict, signature_file: str, key_arn: str) -> None:
    algorithm = doc.get("signing_algorithm")
    if algorithm not in ALGORITHMS:
        raise BundleError(f"{MANIFEST} names signing algorithm {algorithm!r}, not one of "
                          f"{', '.join(ALGORITHMS)}")
    try:
        with open(signature_file, "rb") as f:
            signature = base64.b64decode(f.read().strip(), validate=True)
    except (ValueError, OSError) as exc:
        raise BundleError(f"{SIGNATURE}: not a base64 signature ({exc})") from None
    try:
        client = _kms(key_arn)
        answer = client.verify(KeyId=key_arn, Message=signed_message(manifest_bytes),
                                      MessageType="RAW", Signature=signature,
                                      SigningAlgorithm=algorithm)
        valid = answer.get("SignatureValid") is True
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in ("KMSInvalidSignatureException", "InvalidKeyUsageException",
                        "ValidationException"):
            raise _aws_error("verify the revision's signature", key_arn, exc, "kms:Verify") from None
        valid = False  # real KMS raises for a bad signature; moto answers SignatureValid false
    except BotoCoreError as exc:
        raise _aws_error("verify the revision's signature", key_arn, exc, "kms:Verify") from None
    if not valid:
        raise BundleError(f"the revision's signature does not verify with deploy.signing_key "
                          f"{key_arn} (signed with {doc.get('signing_key') or 'another key'}, or the "
                          f"manifest was changed): refusing to install it")


def _entries(doc: dict) -> dict:
    """{path: (type, mode, sha256 or None)} from a schema 2 manifest, or a schema 1 one."""
    if doc.get("schema") == 1:
        listed = [dict(e, type="file") for e in doc["files"]] + \
            [dict(e, type="directory") for e in doc["directories"]]
    elif doc.get("schema") == SCHEMA:
        listed = doc["entries"]
    else:
        raise ValueError(f"schema {doc.get('schema')!r}, not 1 or {SCHEMA}")
    out = {}
    for e in listed:
        kind, mode, digest = e["type"], e["mode"], e.get("sha256")
        if kind not in ("file", "directory") or not re.fullmatch("[0-7]{4}", mode) \
                or (kind == "file") != bool(re.fullmatch("[0-9a-f]{64}", digest or "")) \
                or e["path"] in out:
            raise ValueError(f"entry {e['path']!r}: type, mode or sha256 malformed, or listed twice")
        out[e["path"]] = (kind, int(mode, 8), digest)
    return out


def load_manifest(path: str) -> tuple[bytes, dict]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = json.loads(data)
        entries = _entries(doc)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{MANIFEST}: unreadable ({exc})") from None
    return data, {"doc": doc, "entries": entries}


def _walk(archive: str):
    """(relative path, lstat) of every entry under archive but the manifest and signature."""
    for dirpath, dirnames, filenames in os.walk(archive):
        rel_dir = os.path.relpath(dirpath, archive)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in (MANIFEST, SIGNATURE):
                yield rel, os.lstat(os.path.join(dirpath, name))


def check_owners(archive: str) -> None:
    """Every entry root's: whatever unpacked it did not apply the archive's owners (the app user
    could otherwise rewrite a hook script or the wheel root runs)."""
    for rel, st in _walk(archive):
        if st.st_uid != 0 or st.st_gid != 0:
            raise BundleError(f"{rel}: owned by uid {st.st_uid} gid {st.st_gid}, not root (the "
                              "archive's owners were applied when it was unpacked)")


def check_tree(archive: str, entries: dict) -> int:
    """Every entry under archive against the manifest (type, mode, hash); the number of files."""
    seen = set()
    for rel, st in _walk(archive):
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else None
        if kind is None:
            raise BundleError(f"{rel}: not in {MANIFEST} (a symbolic link or special file; the "
                              "revision was changed after it was built)")
        if rel not in entries:
            raise BundleError(f"{rel}: a {kind} not in {MANIFEST} (added after the revision was built)")
        want, mode, digest = entries[rel]
        seen.add(rel)
        if kind != want:
            raise BundleError(f"{rel}: a {kind}, but {MANIFEST} lists a {want}")
        if stat.S_IMODE(st.st_mode) != mode:
            raise BundleError(f"{rel}: mode {stat.S_IMODE(st.st_mode):04o}, but {MANIFEST} says {mode:04o}")
        if kind == "file" and sha256_file(os.path.join(archive, rel)) != digest:
            raise BundleError(f"{rel}: its sha256 does not match {MANIFEST} (the file was changed "
                              "after the revision was built)")
    missing = sorted(set(entries) - seen)
    if missing:
        raise BundleError(f"{missing[0]}: listed in {MANIFEST} but missing from the revision")
    return sum(1 for kind, _, _ in entries.values() if kind == "file")


def _check_binding(doc: dict, application: str | None, deployment_group: str | None) -> None:
    """A signed manifest names the application and deployment group it was signed for, and when."""
    if doc.get("schema") != SCHEMA:
        raise BundleError(f"{MANIFEST} is schema {doc.get('schema')}: it binds no application, "
                          "deployment group or creation time; rebuild the revision with this "
                          "bingo-host (`bingo-host bundle --sign-key KEY --application APP "
                          "--deployment-group GROUP`)")
    for key, value in (("application", application), ("deployment_group", deployment_group)):
        if doc.get(key) != value or not value:
            raise BundleError(f"the revision is signed for {key} {doc.get(key)!r}, but this "
                              f"deployment's is {value!r}: refusing to install it")
    if not isinstance(doc.get("created"), str) or not CREATED.fullmatch(doc["created"]):
        raise BundleError(f"{MANIFEST}: created {doc.get('created')!r} is not a time like "
                          "2026-01-31T12:00:00Z")


def verify(archive: str, deploy_cfg, application: str | None = None,
           deployment_group: str | None = None) -> dict:
    """Check the unpacked revision at archive; BundleError (nothing installed) when it fails.
    What it is: {"signed", "manifest_sha256", "created", "application", "deployment_group"}
    (the last three null unless signed and verified)."""
    manifest_file, signature_file = f"{archive}/{MANIFEST}", f"{archive}/{SIGNATURE}"
    required = deploy_cfg.require_signature
    check_owners(archive)
    revision = {"signed": False, "manifest_sha256": None, **{k: None for k in BINDING}}
    if not os.path.isfile(manifest_file):
        if required:
            raise BundleError(f"the revision has no {MANIFEST}: it is unsigned, and this host's "
                              "deploy.require_signature is on (build it with `bingo-host bundle "
                              "--sign-key KEY`)")
        log.info(f"integrity: the revision has no {MANIFEST}; not checked (deploy.require_signature "
                 "is off)")
        return revision
    data, parsed = load_manifest(manifest_file)
    revision["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    if required:
        if not os.path.isfile(signature_file):
            raise BundleError(f"the revision has no {SIGNATURE}: it is unsigned, and this host's "
                              "deploy.require_signature is on (build it with `bingo-host bundle "
                              "--sign-key KEY`)")
        _verify_signature(data, parsed["doc"], signature_file, deploy_cfg.signing_key)
        _check_binding(parsed["doc"], application, deployment_group)
        revision.update({k: parsed["doc"][k] for k in BINDING}, signed=True)
    count = check_tree(archive, parsed["entries"])
    if required:
        log.info(f"integrity: {count} files match {MANIFEST}, signed with {deploy_cfg.signing_key} for "
                 f"{application}/{deployment_group}, created {revision['created']}")
    else:
        log.info(f"integrity: {count} files match {MANIFEST} (signature not checked: "
                 "deploy.require_signature is off)")
    return revision
