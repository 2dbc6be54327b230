"""The dumps in S3: names, listing, upload, download, deletion; each failure mapped to a message.

Keys are ``<backups.prefix><database>-<UTC time>.sql.gz`` with a sidecar ``<key>.json``. The
endpoint comes only from the standard overrides (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL) and the
region from the environment, the instance metadata or the bucket itself, as boto3 finds them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlencode

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import ConfigError

from . import BackupError

SUFFIX = ".sql.gz"
SIDECAR = ".json"
MANAGED_TAG = "bingo-host:managed"
DATABASE_TAG = "bingo-host:database"
HOST_TAG = "bingo-host:host"
PART_SIZE = 8 * 1024 * 1024  # held in memory once at a time: small enough for a nano
# The IAM actions behind each call this module makes (S3's operation names are not its IAM
# action names); tests/test_aws_actions.py checks them against aws_actions.ACTIONS.
IAM_ACTIONS = {
    "put_object": ("s3:PutObject", "s3:PutObjectTagging"),  # with Tagging
    "upload_fileobj": ("s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"),
    "get_object": ("s3:GetObject",),
    "list_objects_v2": ("s3:ListBucket",),
    "delete_object": ("s3:DeleteObject",),
}
NEEDS = {"PutObject": "s3:PutObject and s3:PutObjectTagging", "GetObject": "s3:GetObject",
         "ListObjectsV2": "s3:ListBucket", "DeleteObject": "s3:DeleteObject",
         "upload": "s3:PutObject, s3:PutObjectTagging and s3:AbortMultipartUpload"}


@dataclass(frozen=True)
class Dump:
    bucket: str
    key: str
    complete: bool  # its sidecar exists

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def client():
    return boto3.session.Session().client("s3", config=Config(
        connect_timeout=5, read_timeout=60, retries={"mode": "standard", "total_max_attempts": 5}))


def _call(what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), every AWS failure a BackupError naming what to grant."""
    try:
        return fn(*args, **kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise _error(what, exc) from None


def _error(what: str, exc) -> BackupError:
    if isinstance(exc, NoCredentialsError):
        return BackupError(f"no AWS credentials for S3 {what}: attach an instance profile whose role "
                           f"allows {NEEDS.get(what, what)}")
    if not isinstance(exc, ClientError):
        return BackupError(f"S3 {what} failed: {exc}")
    err = exc.response.get("Error", {})
    code = err.get("Code", "?")
    if code in ("AccessDenied", "403"):
        return BackupError(f"S3 denied {what} ({code}): the instance role needs "
                           f"{NEEDS.get(what, what)} on the backup prefix")
    return BackupError(f"S3 {what} failed: {code}: {err.get('Message', '')}".rstrip(": "))


def new_key(prefix: str, database: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{prefix}{database}-{now.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key) of s3://BUCKET/KEY.sql.gz; ConfigError (exit 2) otherwise."""
    m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(\S+)", url)
    if not m or not m.group(2).endswith(SUFFIX):
        raise ConfigError("--dump", f"must be 'latest' or s3://BUCKET/KEY{SUFFIX} (got {url[:60]!r})")
    return m.group(1), m.group(2)


def list_dumps(s3, bucket: str, prefix: str, database: str) -> list[Dump]:
    """This database's dumps under prefix, oldest first (the time is in the name)."""
    name = re.compile(re.escape(prefix + database) + r"-\d{8}T\d{6}Z" + re.escape(SUFFIX))
    keys = set()
    token = None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": f"{prefix}{database}-"}
        if token:
            kwargs["ContinuationToken"] = token
        page = _call("ListObjectsV2", s3.list_objects_v2, **kwargs)
        keys.update(o["Key"] for o in page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not token:
            break
    return [Dump(bucket, k, k + SIDECAR in keys) for k in sorted(keys) if name.fullmatch(k)]


def _tagging(tags: dict[str, str]) -> str:
    return urlencode(tags)


def upload(s3, bucket: str, key: str, reader, tags: dict[str, str]) -> None:
    """Stream reader to s3://bucket/key, encrypted at rest and tagged; a multipart upload that
    fails is aborted (no hidden parts left to pay for)."""
    config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                            use_threads=False)
    _call("upload", s3.upload_fileobj, reader, bucket, key, Config=config, ExtraArgs={
        "ServerSideEncryption": "AES256", "Tagging": _tagging(tags),
        "ContentType": "application/gzip"})


def put_sidecar(s3, bucket: str, key: str, record: dict, tags: dict[str, str]) -> None:
    _call("PutObject", s3.put_object, Bucket=bucket, Key=key + SIDECAR,
          Body=json.dumps(record, indent=2, sort_keys=True).encode(), ContentType="application/json",
          ServerSideEncryption="AES256", Tagging=_tagging(tags))


def get_sidecar(s3, bucket: str, key: str) -> dict | None:
    """The dump's record; None when it has none (a dump made elsewhere, or an incomplete one)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key + SIDECAR)["Body"].read(1024 * 1024)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise _error("GetObject", exc) from None
    except BotoCoreError as exc:
        raise _error("GetObject", exc) from None
    try:
        record = json.loads(body)
    except ValueError:
        raise BackupError(f"s3://{bucket}/{key}{SIDECAR} is not JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("tables"), dict):
        raise BackupError(f"s3://{bucket}/{key}{SIDECAR} has no table counts")
    return record


def chunks(s3, bucket: str, key: str) -> Iterator[bytes]:
    """The object's bytes as they arrive (never whole in memory)."""
    body = _call("GetObject", s3.get_object, Bucket=bucket, Key=key)["Body"]
    try:
        while chunk := _call("GetObject", body.read, 256 * 1024):
            yield chunk
    finally:
        body.close()


def delete(s3, dump: Dump) -> None:
    for key in (dump.key, dump.key + SIDECAR):
        _call("DeleteObject", s3.delete_object, Bucket=dump.bucket, Key=key)


def prune(s3, dumps: list[Dump], keep: int) -> list[Dump]:
    """Delete all but the newest `keep` complete dumps, and incomplete ones older than the newest
    complete one (a run killed before its sidecar). Returns what was deleted."""
    complete = [d for d in dumps if d.complete]
    kept = set(complete[-keep:])
    newest = complete[-1].key if complete else ""
    doomed = [d for d in dumps if d not in kept and (d.complete or d.key < newest)]
    for dump in doomed:
        delete(s3, dump)
    return doomed
