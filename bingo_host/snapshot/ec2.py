"""The EC2 calls a snapshot run makes, each failure mapped to a message naming what to grant.

Endpoints come only from the standard overrides (``AWS_ENDPOINT_URL_EC2``, ``AWS_ENDPOINT_URL``),
which boto3 honours, as :mod:`bingo_host.facts.imds` honours
``AWS_EC2_METADATA_SERVICE_ENDPOINT``; the region comes from the instance metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError,
                                 PartialCredentialsError)

from ..facts.ebs import ebs_name, nvme_volume_id, volume_device
from ..facts.imds import Identity
from . import SnapshotError

# Whose snapshot it is: retention deletes only snapshots carrying this stack's value, and the
# stack's IAM policy allows DeleteSnapshot on exactly those (aws:ResourceTag/bingo-host:stack).
STACK_TAG = "bingo-host:stack"
CFN_STACK_TAG = "aws:cloudformation:stack-name"  # CloudFormation puts it on the instances it makes
INSTANCE_TAG = "bingo-host:instance"
VOLUME_TAG = "bingo-host:volume"
DEVICE_TAG = "bingo-host:device"
MOUNTPOINT_TAG = "bingo-host:mountpoint"

# Tagging on create (TagSpecifications) also needs ec2:CreateTags.
IMPLIED_ACTIONS = {"CreateSnapshot": ("ec2:CreateTags",), "CreateVolume": ("ec2:CreateTags",)}


def clients(region: str, session=None):
    """(client for ordinary calls, client for the CreateSnapshot made while frozen).

    Standard retries cover throttling and 5xx. The frozen call gets short timeouts and few
    attempts so that it fails by itself well before the watchdog's deadline.
    """
    session = session or boto3.session.Session()
    normal = session.client("ec2", region_name=region, config=Config(
        connect_timeout=3, read_timeout=15,
        retries={"mode": "standard", "total_max_attempts": 5}))
    frozen = session.client("ec2", region_name=region, config=Config(
        connect_timeout=2, read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 3}))
    return normal, frozen


def _actions_for(operation: str) -> str:
    return " and ".join([f"ec2:{operation}", *IMPLIED_ACTIONS.get(operation, ())])


def call(client, operation: str, **kwargs):
    """client.<operation>(**kwargs); every failure becomes a SnapshotError saying what to do,
    except DryRunOperation (the answer to an allowed DryRun), which is raised as it is."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
    method = getattr(client, snake)
    try:
        return method(**kwargs)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise SnapshotError(
            f"no AWS credentials for {operation} ({exc}): attach an instance profile whose role "
            f"allows {_actions_for(operation)}") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, msg = err.get("Code", "?"), err.get("Message", "")
        if code == "DryRunOperation":
            raise
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            raise SnapshotError(
                f"AWS denied {operation} ({code}): the instance role needs "
                f"{_actions_for(operation)}") from None
        if code in ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch"):
            raise SnapshotError(f"AWS rejected the credentials for {operation} ({code}: {msg})") \
                from None
        raise SnapshotError(f"EC2 {operation} failed: {code}: {msg}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise SnapshotError(f"EC2 {operation} failed: {exc}") from None


def tag_dict(snap: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in snap.get("Tags", []) or []}


# -- whose snapshots --

def stack_identity(ec2, instance_id: str, configured: str = "auto") -> str:
    """The bingo-host:stack value of this host's snapshots: snapshots.stack if set, else the
    instance's aws:cloudformation:stack-name tag (the stack's ${AWS::StackName}), else (a host
    no stack made) its instance id."""
    if configured != "auto":
        return configured
    resp = call(ec2, "DescribeTags", Filters=[
        {"Name": "resource-id", "Values": [instance_id]},
        {"Name": "key", "Values": [CFN_STACK_TAG]}])
    names = [t["Value"] for t in resp.get("Tags", [])
             if t.get("ResourceId") == instance_id and t.get("Key") == CFN_STACK_TAG]
    return names[0] if names else instance_id


# -- volumes --

@dataclass(frozen=True)
class Attached:
    volume_id: str
    device: str
    size_gib: int


def attached_volumes(ec2, instance_id: str) -> list[Attached]:
    resp = call(ec2, "DescribeVolumes",
                Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
    found = []
    for vol in resp.get("Volumes", []):
        for att in vol.get("Attachments", []):
            if att.get("InstanceId") == instance_id and att.get("State") in ("attached", None):
                found.append(Attached(vol["VolumeId"], att["Device"], vol.get("Size", 0)))
    return sorted(found, key=lambda a: ebs_name(a.device))


def find_data_volume(volumes: list[Attached], device: str,
                     mounted_id: str | None = None) -> Attached | None:
    """The data volume among this instance's attachments. `mounted_id` is the EBS volume id of
    the disk mounted at volume.mountpoint, when the host can tell (Nitro: its NVMe serial): that
    is the data volume, whatever it is attached as. Otherwise the attachment `device`
    (volume.device) names: by its sdX/xvdX name, for an NVMe path by the volume id in its
    serial, else (a link such as /dev/disk/by-label/...) the volume whose by-id node it
    resolves to."""
    if mounted_id:
        return next((v for v in volumes if v.volume_id == mounted_id), None)
    key = ebs_name(device)
    for vol in volumes:
        if ebs_name(vol.device) == key:
            return vol
    if device.startswith("/dev/nvme") and (vol_id := nvme_volume_id(device)):
        return next((v for v in volumes if v.volume_id == vol_id), None)
    if os.path.exists(device):
        node = os.path.realpath(device)
        return next((v for v in volumes if volume_device(v.volume_id) == node), None)
    return None


# -- snapshots --

@dataclass
class Made:
    volume_id: str
    device: str
    mountpoint: str
    snapshot_id: str
    consistency: str  # "application" (locked + frozen) or "crash"
    state: str


def _tag_spec(app_name: str, ident: Identity, stack: str, vol: Attached,
              mountpoint: str) -> list[dict]:
    tags = {STACK_TAG: stack, INSTANCE_TAG: ident.instance_id,
            VOLUME_TAG: vol.volume_id,
            DEVICE_TAG: vol.device, MOUNTPOINT_TAG: mountpoint,
            "Name": f"{app_name} {vol.device} {ident.instance_id}"}
    return [{"ResourceType": "snapshot",
             "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def create_snapshot(ec2, app_name: str, ident: Identity, stack: str, vol: Attached,
                    mountpoint: str, consistency: str) -> Made:
    resp = call(ec2, "CreateSnapshot", VolumeId=vol.volume_id,
                Description=f"bingo-host {ident.instance_id} {vol.device} {mountpoint or '-'} "
                            f"({consistency}-consistent)",
                TagSpecifications=_tag_spec(app_name, ident, stack, vol, mountpoint))
    state = resp.get("State", "pending")
    if state == "error":
        raise SnapshotError(f"EC2 reports snapshot {resp.get('SnapshotId')} of {vol.volume_id} "
                            f"in state error: {resp.get('StateMessage', '')}")
    return Made(vol.volume_id, vol.device, mountpoint, resp["SnapshotId"], consistency, state)


def preflight(ec2, app_name: str, ident: Identity, stack: str, vol: Attached,
              mountpoint: str) -> None:
    """CreateSnapshot with DryRun: checks the permission (ec2:CreateSnapshot and, for the tags,
    ec2:CreateTags) before anything is locked, and opens the connection the frozen call uses."""
    try:
        call(ec2, "CreateSnapshot", VolumeId=vol.volume_id, DryRun=True,
             TagSpecifications=_tag_spec(app_name, ident, stack, vol, mountpoint))
    except ClientError as exc:  # only DryRunOperation gets through call(): allowed
        assert exc.response["Error"]["Code"] == "DryRunOperation"
