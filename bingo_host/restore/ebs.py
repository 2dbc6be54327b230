"""The EC2 side of a restore: the data volume's lineage, CreateVolume, tags, detach, attach.

Every call goes through snapshot.ec2.call, so a denied one names the action to grant. Volumes
and snapshots are looked up with filters (an unknown id is an empty answer, not an error).
"""

from __future__ import annotations

import time
from typing import Callable

from ..ebs_attach import FAILED, REPLACED_BY, ROLE_TAG
from ..snapshot.ec2 import call, tag_dict
from . import RestoreError

RESTORED_FROM = "bingo-host:restored-from"  # on the new volume: the snapshot
REPLACES = "bingo-host:replaces"  # on the new volume: the volume it took over from
LINEAGE = "bingo-host:lineage"  # on the new volume: the volumes before it, newest first
TOKEN = "bingo-host:restore-token"  # finds a volume whose CreateVolume answer was lost
RELEASED_FROM = "bingo-host:released-from"  # handed over by this instance (release-volume)
NOT_COPIED = (REPLACED_BY, FAILED, TOKEN, RESTORED_FROM, REPLACES, LINEAGE, RELEASED_FROM)
MARKS = (REPLACED_BY, FAILED, RELEASED_FROM)  # the tags put on volumes that exist already
TAG_VALUE_MAX = 256
WAIT = 300.0


def volume(ec2, volume_id: str) -> dict | None:
    vols = call(ec2, "DescribeVolumes",
                Filters=[{"Name": "volume-id", "Values": [volume_id]}]).get("Volumes", [])
    return vols[0] if vols else None


def snapshot(ec2, snapshot_id: str) -> dict | None:
    snaps = call(ec2, "DescribeSnapshots",
                 Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}]).get("Snapshots", [])
    return snaps[0] if snaps else None


def by_token(ec2, token: str) -> dict | None:
    vols = call(ec2, "DescribeVolumes",
                Filters=[{"Name": f"tag:{TOKEN}", "Values": [token]}]).get("Volumes", [])
    return vols[0] if vols else None


def attachment(vol: dict | None, instance_id: str) -> dict | None:
    """The volume's attachment to instance_id (attaching or attached), if any."""
    for att in (vol or {}).get("Attachments", []) or []:
        if att.get("InstanceId") == instance_id and att.get("State") in ("attaching", "attached"):
            return att
    return None


def lineage(vol: dict) -> list[str]:
    """The volume and the data volumes it replaced, newest first: whose snapshots are this
    host's."""
    return [vol["VolumeId"], *tag_dict(vol).get(LINEAGE, "").split()]


def _lineage_tag(old: dict) -> str:
    ids, text = lineage(old), ""
    for vol_id in ids:  # newest first, as many as a tag value holds
        if len(text) + len(vol_id) + 1 > TAG_VALUE_MAX:
            break
        text = f"{text} {vol_id}".strip()
    return text


def create_volume(ec2, snap: dict, old: dict, zone: str, token: str) -> str:
    """A volume from snap in zone: the old volume's type, IOPS and throughput, at least its
    size, encrypted (with its key when it names one), its tags plus the restore's."""
    tags = {k: v for k, v in tag_dict(old).items() if not k.startswith("aws:") and k not in NOT_COPIED}
    tags.update({RESTORED_FROM: snap["SnapshotId"], REPLACES: old["VolumeId"],
                 LINEAGE: _lineage_tag(old), TOKEN: token})
    kwargs = {"AvailabilityZone": zone, "SnapshotId": snap["SnapshotId"],
              "VolumeType": old.get("VolumeType") or "gp3",
              "Size": max(int(old.get("Size") or 0), int(snap.get("VolumeSize") or 0)),
              "Encrypted": True,
              "TagSpecifications": [{"ResourceType": "volume",
                                     "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]}
    if old.get("KmsKeyId"):
        kwargs["KmsKeyId"] = old["KmsKeyId"]
    if kwargs["VolumeType"] in ("gp3", "io1", "io2") and old.get("Iops"):
        kwargs["Iops"] = old["Iops"]
    if kwargs["VolumeType"] == "gp3" and old.get("Throughput"):
        kwargs["Throughput"] = old["Throughput"]
    return call(ec2, "CreateVolume", **kwargs)["VolumeId"]


def tag(ec2, volume_id: str, key: str, value: str) -> None:
    call(ec2, "CreateTags", Resources=[volume_id], Tags=[{"Key": key, "Value": value[:TAG_VALUE_MAX]}])


def drop_role(ec2, vol: dict) -> None:
    """The volume is no longer the data volume: a replacement instance must not attach it."""
    if ROLE_TAG in tag_dict(vol):
        call(ec2, "DeleteTags", Resources=[vol["VolumeId"]], Tags=[{"Key": ROLE_TAG}])


def detach(ec2, volume_id: str, instance_id: str, device: str) -> None:
    call(ec2, "DetachVolume", VolumeId=volume_id, InstanceId=instance_id, Device=device)


def attach(ec2, volume_id: str, instance_id: str, device: str) -> None:
    call(ec2, "AttachVolume", VolumeId=volume_id, InstanceId=instance_id, Device=device)


def wait_for(ec2, volume_id: str, done: Callable[[dict], bool], what: str,
             timeout: float = WAIT, interval: float = 2.0) -> dict:
    """Poll DescribeVolumes until done(volume) (EC2 changes states asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        vol = volume(ec2, volume_id)
        if vol is None:
            raise RestoreError(f"{volume_id} disappeared while waiting for it to be {what}")
        if vol.get("State") == "error":
            raise RestoreError(f"EC2 reports {volume_id} in state error")
        if done(vol):
            return vol
        if time.monotonic() >= deadline:
            raise RestoreError(f"{volume_id} is not {what} after {timeout:.0f} s "
                               f"(state {vol.get('State')})")
        time.sleep(interval)
