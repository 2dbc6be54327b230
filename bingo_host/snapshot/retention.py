"""Retention: keep the newest `snapshots.keep` snapshots of each volume that are this stack's.

Only snapshots tagged ``bingo-host:stack=<this stack>`` are ever deleted (the tag is checked
again here, not only by the server-side filter): snapshots made by hand, by other tools or by
another stack stay, and the stack's IAM policy would refuse to delete them anyway. The choice
(`expired`) is pure, over DescribeSnapshots' answer; `prune` makes the EC2 calls around it.
"""

from __future__ import annotations

from typing import Any

from . import SnapshotError
from .ec2 import STACK_TAG, call, tag_dict


def expired(snapshots: list[dict], volume_id: str, stack: str, keep: int) -> list[str]:
    """The ids to delete, newest first: the volume's snapshots tagged with this stack, past the
    newest `keep` (by StartTime; the id breaks a tie, so the same answer comes every time)."""
    ours = [s for s in snapshots if tag_dict(s).get(STACK_TAG) == stack and s.get("VolumeId") == volume_id]
    ours.sort(key=lambda s: (s["StartTime"], s["SnapshotId"]), reverse=True)
    return [s["SnapshotId"] for s in ours[keep:]]


def stack_snapshots(ec2, volume_id: str, stack: str) -> list[dict]:
    """Every page of DescribeSnapshots for the volume and the stack's tag."""
    snaps = []
    kwargs: dict[str, Any] = {"OwnerIds": ["self"], "Filters": [
        {"Name": "volume-id", "Values": [volume_id]}, {"Name": f"tag:{STACK_TAG}", "Values": [stack]}]}
    while True:
        resp = call(ec2, "DescribeSnapshots", **kwargs)
        snaps.extend(resp.get("Snapshots", []))
        if not resp.get("NextToken"):
            return snaps
        kwargs = {**kwargs, "NextToken": resp["NextToken"]}


def prune(ec2, volume_id: str, stack: str, keep: int, *, dry_run: bool = False,
          warnings: list[str] | None = None) -> list[str]:
    """Delete the expired snapshots; return the ids deleted (with dry_run, those it would).
    A snapshot an AMI still uses is kept, with a warning."""
    deleted = []
    for snap_id in expired(stack_snapshots(ec2, volume_id, stack), volume_id, stack, keep):
        if not dry_run:
            try:
                call(ec2, "DeleteSnapshot", SnapshotId=snap_id)
            except SnapshotError as exc:
                if "InvalidSnapshot.InUse" in str(exc):
                    if warnings is not None:
                        warnings.append(f"kept {snap_id}: in use ({exc})")
                    continue
                raise
        deleted.append(snap_id)
    return deleted
