"""The revision's manifest and its KMS signature: what a host checks before it runs anything from it.

`bingo-host bundle` writes bingo-manifest.json into every revision: each file's path, sha256 and
mode and each directory's path and mode, sorted, and with `--sign-key` the KMS key's ARN and the
signing algorithm; then bingo-manifest.sig, the base64 of a KMS signature (MessageType RAW, so
real KMS and moto compute the same thing) over SIGNED_PREFIX + the manifest's sha256. The private
key never leaves KMS; signing needs kms:Sign on it (the deployer role), checking kms:Verify (the
instance role).

BeforeInstall (hooks.run, before the bundle's wheel is even looked at) checks the unpacked revision
against it: every listed file present with its hash and mode, nothing unlisted (no extra file, no
symbolic link, no device), and, when the host's config says deploy.require_signature, the
signature verified by KMS with the host's own deploy.signing_key (never a key the bundle names).
What this does and does not guarantee is in the README ("Signed revisions").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

from . import BundleError, DeployError

MANIFEST = "bingo-manifest.json"
SIGNATURE = "bingo-manifest.sig"
SCHEMA = 1
SIGNED_PREFIX = b"bingo-host revision manifest v1 sha256:"
#: Preferred first: PKCS#1 v1.5 signatures are deterministic, so a signed bundle stays
#: reproducible byte for byte; ECDSA for elliptic-curve keys.
ALGORITHMS = ("RSASSA_PKCS1_V1_5_SHA_256", "ECDSA_SHA_256", "RSASSA_PSS_SHA_256")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(files: list[tuple[str, str, int]], dirs: list[tuple[str, int]], key_arn: str | None,
             algorithm: str | None) -> bytes:
    """The manifest's bytes: files (path, sha256, mode), dirs (path, mode); sorted, canonical."""
    doc = {"schema": SCHEMA,
           "signing_key": key_arn, "signing_algorithm": algorithm,
           "directories": [{"path": p, "mode": f"{m:04o}"} for p, m in sorted(dirs)],
           "files": [{"path": p, "sha256": h, "mode": f"{m:04o}"} for p, h, m in sorted(files)]}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def signed_message(manifest_bytes: bytes) -> bytes:
    return SIGNED_PREFIX + hashlib.sha256(manifest_bytes).hexdigest().encode()


def _kms(key_arn: str):
    import boto3
    from botocore.config import Config

    region = key_arn.split(":")[3] if key_arn.startswith("arn:") else None
    return boto3.client("kms", region_name=region,
                        config=Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=15))


def _aws_error(what: str, key_arn: str, exc, action: str) -> DeployError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        hint = f" (needs {action} on it)" if "Denied" in code or "Unauthorized" in code else ""
        return DeployError(f"cannot {what} with {key_arn}: {code}{hint}")
    return DeployError(f"cannot {what} with {key_arn}: {exc}")


def signing_algorithm(key_arn: str) -> str:
    """The algorithm to sign with: the first of ALGORITHMS the key supports."""
    from botocore.exceptions import BotoCoreError, ClientError

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
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = _kms(key_arn)
        answer = client.sign(KeyId=key_arn, Message=signed_message(manifest_bytes),
                                    MessageType="RAW", SigningAlgorithm=algorithm)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error("sign the manifest", key_arn, exc, "kms:Sign") from None
    return base64.b64encode(answer["Signature"]) + b"\n"


def _verify_signature(manifest_bytes: bytes, doc: dict, signature_file: str, key_arn: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

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


def load_manifest(path: str) -> tuple[bytes, dict]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = json.loads(data)
        if doc.get("schema") != SCHEMA or not isinstance(doc.get("files"), list) \
                or not isinstance(doc.get("directories"), list):
            raise ValueError(f"not a schema {SCHEMA} manifest")
        files = {e["path"]: (e["sha256"], int(e["mode"], 8)) for e in doc["files"]}
        dirs = {e["path"]: int(e["mode"], 8) for e in doc["directories"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{MANIFEST}: unreadable ({exc})") from None
    return data, {"doc": doc, "files": files, "dirs": dirs}


def check_tree(archive: str, files: dict, dirs: dict) -> int:
    """Every file and directory under archive against the manifest; the number of files."""
    seen_files, seen_dirs = set(), set()
    for dirpath, dirnames, filenames in os.walk(archive):
        rel_dir = os.path.relpath(dirpath, archive)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in (MANIFEST, SIGNATURE):
                continue
            st = os.lstat(os.path.join(dirpath, name))
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                want = dirs.get(rel)
                what = "directory"
                seen_dirs.add(rel)
            elif stat.S_ISREG(st.st_mode):
                entry = files.get(rel)
                want = entry[1] if entry else None
                what = "file"
                seen_files.add(rel)
            else:
                raise BundleError(f"{rel}: not in {MANIFEST} (a symbolic link or special file; the "
                                  "revision was changed after it was built)")
            if want is None:
                raise BundleError(f"{rel}: a {what} not in {MANIFEST} (added after the revision was "
                                  "built)")
            if mode != want:
                raise BundleError(f"{rel}: mode {mode:04o}, but {MANIFEST} says {want:04o}")
            if what == "file" and sha256_file(os.path.join(dirpath, name)) != entry[0]:
                raise BundleError(f"{rel}: its sha256 does not match {MANIFEST} (the file was changed "
                                  "after the revision was built)")
    missing = sorted(set(files) - seen_files) + sorted(set(dirs) - seen_dirs)
    if missing:
        raise BundleError(f"{missing[0]}: listed in {MANIFEST} but missing from the revision")
    return len(files)


def verify(archive: str, deploy_cfg, echo=print) -> None:
    """Check the unpacked revision at archive; BundleError (nothing installed) when it fails."""
    manifest_file, signature_file = f"{archive}/{MANIFEST}", f"{archive}/{SIGNATURE}"
    required = deploy_cfg.require_signature
    if not os.path.isfile(manifest_file):
        if required:
            raise BundleError(f"the revision has no {MANIFEST}: it is unsigned, and this host's "
                              "deploy.require_signature is on (build it with `bingo-host bundle "
                              "--sign-key KEY`)")
        echo(f"integrity: the revision has no {MANIFEST}; not checked (deploy.require_signature "
             "is off)")
        return
    data, parsed = load_manifest(manifest_file)
    if required:
        if not os.path.isfile(signature_file):
            raise BundleError(f"the revision has no {SIGNATURE}: it is unsigned, and this host's "
                              "deploy.require_signature is on (build it with `bingo-host bundle "
                              "--sign-key KEY`)")
        _verify_signature(data, parsed["doc"], signature_file, deploy_cfg.signing_key)
    count = check_tree(archive, parsed["files"], parsed["dirs"])
    if required:
        echo(f"integrity: {count} files match {MANIFEST}, signed with {deploy_cfg.signing_key}")
    else:
        echo(f"integrity: {count} files match {MANIFEST} (signature not checked: "
             "deploy.require_signature is off)")
