"""Retention: keep the newest `snapshots.keep` snapshots of each volume that are this stack's.

Only snapshots tagged ``bingo-host:stack=<this stack>`` are ever deleted (the tag is checked
again here, not only by the server-side filter): snapshots made by hand, by other tools or by
another stack stay, and the stack's IAM policy would refuse to delete them anyway.
"""

from __future__ import annotations

from typing import Any

from . import SnapshotError
from .ec2 import STACK_TAG, call, tag_dict


def stack_snapshots(ec2, volume_id: str, stack: str) -> list[dict]:
    snaps = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"OwnerIds": ["self"], "Filters": [
            {"Name": "volume-id", "Values": [volume_id]},
            {"Name": f"tag:{STACK_TAG}", "Values": [stack]}]}
        if token:
            kwargs["NextToken"] = token
        resp = call(ec2, "DescribeSnapshots", **kwargs)
        snaps.extend(resp.get("Snapshots", []))
        token = resp.get("NextToken")
        if not token:
            break
    return [s for s in snaps if tag_dict(s).get(STACK_TAG) == stack
            and s.get("VolumeId") == volume_id]


def prune(ec2, volume_id: str, stack: str, keep: int, *, dry_run: bool = False,
          warnings: list[str] | None = None) -> list[str]:
    """Delete all but the newest `keep` of the volume's snapshots of this stack; return the ids.
    A snapshot an AMI still uses is kept, with a warning."""
    deleted = []
    snaps = sorted(stack_snapshots(ec2, volume_id, stack),
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
