"""bingo-host's dump retention on the versioned backup bucket (cloudformation/backup-bucket.yaml):
a prune or an attacker's delete only adds a delete marker (the instance role has no
s3:DeleteObjectVersion), `latest` never picks a deleted dump, and every version stays until
the bucket's lifecycle expires it."""

from __future__ import annotations

import gzip

import pytest

from bingo_host.backup import run, store
from bingo_host.config_file import load_config_text

BUCKET = "bingo-backups"


@pytest.fixture
def versioned(s3):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


def _put(s3, day: int) -> str:
    key = f"p/bingo-202601{day:02d}T000000Z.sql.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b"-- dump\n"))
    s3.put_object(Bucket=BUCKET, Key=key + ".json", Body=b'{"tables": {}}')
    return key


def test_prune_and_latest_on_a_versioned_bucket_leave_every_version(versioned):
    s3 = versioned
    cfg = load_config_text(f"backups: {{enabled: true, bucket: {BUCKET}, prefix: p/, keep: 2}}\n")
    keys = [_put(s3, day) for day in range(1, 5)]
    deleted = store.prune(s3, store.list_dumps(s3, BUCKET, "p/", "bingo"), keep=2)
    assert [d.key for d in deleted] == keys[:2]
    assert [d.key for d in store.list_dumps(s3, BUCKET, "p/", "bingo")] == keys[2:]
    assert run._latest(cfg, s3).key == keys[3]

    # What a compromised instance can do: delete (a marker), never remove a version.
    store.delete(s3, store.Dump(BUCKET, keys[3], True))
    assert run._latest(cfg, s3).key == keys[2]
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="p/")
    markers = {m["Key"] for m in versions.get("DeleteMarkers", [])}
    kept = {v["Key"] for v in versions["Versions"]}
    assert markers == {k + suffix for k in (keys[0], keys[1], keys[3]) for suffix in ("", ".json")}
    assert kept == {k + suffix for k in keys for suffix in ("", ".json")}  # all recoverable

    # Recovery (an admin): delete the marker and the dump is back, and `latest` again.
    marker = next(m for m in versions["DeleteMarkers"] if m["Key"] == keys[3] and m["IsLatest"])
    s3.delete_object(Bucket=BUCKET, Key=keys[3], VersionId=marker["VersionId"])
    marker = next(m for m in versions["DeleteMarkers"] if m["Key"] == keys[3] + ".json")
    s3.delete_object(Bucket=BUCKET, Key=keys[3] + ".json", VersionId=marker["VersionId"])
    assert run._latest(cfg, s3).key == keys[3]
