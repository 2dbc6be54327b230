"""Retention: keep the newest `snapshots.keep` managed snapshots of each volume.

Only snapshots tagged ``bingo-host:managed=true`` are ever deleted (the tag is checked again
here, not only by the server-side filter): snapshots made by hand or by other tools stay.
"""

from __future__ import annotations

from typing import Any

from . import SnapshotError
from .ec2 import MANAGED_TAG, call, tag_dict


def managed_snapshots(ec2, volume_id: str) -> list[dict]:
    snaps = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"OwnerIds": ["self"], "Filters": [
            {"Name": "volume-id", "Values": [volume_id]},
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]}
        if token:
            kwargs["NextToken"] = token
        resp = call(ec2, "DescribeSnapshots", **kwargs)
        snaps.extend(resp.get("Snapshots", []))
        token = resp.get("NextToken")
        if not token:
            break
    return [s for s in snaps if tag_dict(s).get(MANAGED_TAG) == "true"
            and s.get("VolumeId") == volume_id]


def prune(ec2, volume_ids: list[str], keep: int, *, dry_run: bool = False,
          warnings: list[str] | None = None) -> list[str]:
    """Delete all but the newest `keep` managed snapshots of each volume; return the ids.
    A snapshot an AMI still uses is kept, with a warning."""
    deleted = []
    for volume_id in volume_ids:
        snaps = sorted(managed_snapshots(ec2, volume_id),
                       key=lambda s: (s["StartTime"], s["SnapshotId"]), reverse=True)
        for snap in snaps[keep:]:
            if not dry_run:
                try:
                    call(ec2, "DeleteSnapshot", SnapshotId=snap["SnapshotId"])
                except SnapshotError as exc:
                    if "InvalidSnapshot.InUse" in str(exc):
                        (warnings if warnings is not None else []).append(
                            f"kept {snap['SnapshotId']}: in use ({exc})")
                        continue
                    raise
            deleted.append(snap["SnapshotId"])
    return deleted
