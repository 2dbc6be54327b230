"""The instance attaches its own data volume: the one its stack tagged, in its availability zone.

A stack's template then names no volume id, so a replacement instance and a volume made by
`restore --snapshot` (which carries the same tags, while the volume it replaced loses its role)
need no manual step: bootstrap finds the volume tagged ``bingo-host:stack`` = this instance's
stack and ``bingo-host:role`` = ``database``, waits while another instance lets go of it, and
attaches it. EC2 calls go through snapshot.ec2.call, so a denied one names the action to grant.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .errors import BingoHostError
from .facts.imds import IMDS, Identity
from .snapshot.ec2 import CFN_STACK_TAG, STACK_TAG, call, clients, tag_dict

log = logging.getLogger(__name__)

ROLE_TAG = "bingo-host:role"
ROLE = "database"
REPLACED_BY = "bingo-host:replaced-by"  # on a volume a restore replaced: never attached again
FAILED = "bingo-host:restore-failed"  # on a volume a failed restore made: never attached
WAIT = 600.0  # for a detach elsewhere: the old instance's release-volume, or EC2's own


class AttachError(BingoHostError):
    pass


@dataclass(frozen=True)
class Found:
    volume_id: str
    stack: str
    state: str  # here (attached to this instance) | available | elsewhere
    holder: str | None = None  # the instance that holds it, when elsewhere


def stack_of(ec2, instance_id: str) -> str:
    """The instance's bingo-host:stack tag (the single-instance stack sets it), else the
    aws:cloudformation:stack-name CloudFormation put on it."""
    tags = call(ec2, "DescribeTags", Filters=[
        {"Name": "resource-id", "Values": [instance_id]},
        {"Name": "key", "Values": [STACK_TAG, CFN_STACK_TAG]}]).get("Tags", [])
    found = {t["Key"]: t["Value"] for t in tags if t.get("ResourceId") == instance_id}
    stack = found.get(STACK_TAG) or found.get(CFN_STACK_TAG)
    if not stack:
        raise AttachError(f"volume.attach_as: instance {instance_id} carries no {STACK_TAG} tag "
                          f"(nor {CFN_STACK_TAG}): bootstrap cannot tell which volume is its data "
                          "volume; tag the instance, or attach the volume yourself and set "
                          "volume.attach_as to null")
    return stack


def tagged(ec2, stack: str) -> list[dict]:
    """This stack's data volumes: its tags, the role, and neither replaced nor a failed restore's."""
    vols = call(ec2, "DescribeVolumes", Filters=[
        {"Name": f"tag:{STACK_TAG}", "Values": [stack]},
        {"Name": f"tag:{ROLE_TAG}", "Values": [ROLE]}]).get("Volumes", [])
    return [v for v in vols if not {REPLACED_BY, FAILED} & set(tag_dict(v))]


def choose(vols: list[dict], zone: str | None, stack: str, instance_id: str) -> Found:
    """The one volume to attach (pure): exactly one candidate in the instance's zone, unless
    one is attached here already (mid-restore both carry the role until the old one is done)."""
    what = f"{STACK_TAG}={stack} and {ROLE_TAG}={ROLE}"
    for vol in vols:
        if any(a.get("InstanceId") == instance_id and a.get("State") != "detached"
               for a in vol.get("Attachments") or []):
            return Found(vol["VolumeId"], stack, "here")
    here = [v for v in vols if v.get("AvailabilityZone") == zone]
    if len(here) > 1:
        ids = ", ".join(sorted(v["VolumeId"] for v in here))
        raise AttachError(f"volume.attach_as: {len(here)} volumes carry {what} in {zone} ({ids}): "
                          f"bootstrap attaches only one; remove {ROLE_TAG} from those that are not "
                          "the data volume, then rerun")
    if not here:
        away = ", ".join(f"{v['VolumeId']} in {v.get('AvailabilityZone')}" for v in vols)
        hint = (f"; there is {away}: an EBS volume attaches only in its own zone, so launch the "
                f"instance there, or restore a snapshot of it into {zone}") if away else \
            "; create it, or tag the data volume so"
        raise AttachError(f"volume.attach_as: no volume carries {what} in {zone}{hint}")
    vol = here[0]
    holders = [a for a in vol.get("Attachments") or [] if a.get("State") != "detached"]
    if holders:
        return Found(vol["VolumeId"], stack, "elsewhere", holders[0].get("InstanceId"))
    return Found(vol["VolumeId"], stack, "available" if vol.get("State") == "available" else
                 "elsewhere")


def locate(ident: Identity, session=None, ec2=None) -> Found:
    """Which volume, and where it is now: read only (a dry run asks this too)."""
    ec2 = ec2 or clients(ident.region, session)[0]
    stack = stack_of(ec2, ident.instance_id)
    return choose(tagged(ec2, stack), ident.availability_zone, stack, ident.instance_id)


def attach(ident: Identity, device: str, session=None, ec2=None, wait: float = WAIT,
           interval: float = 5.0, sleep=time.sleep, clock=time.monotonic) -> str:
    """Attach this stack's data volume as device, once no other instance holds it (waiting up to
    `wait` seconds); its id. Looks again before each call, so a rerun after any failure is safe."""
    ec2 = ec2 or clients(ident.region, session)[0]
    deadline = clock() + wait
    said = False
    while True:
        found = locate(ident, ec2=ec2)
        if found.state == "here":
            break
        if found.state == "available":
            call(ec2, "AttachVolume", VolumeId=found.volume_id, InstanceId=ident.instance_id,
                 Device=device)
        elif clock() >= deadline:
            raise AttachError(f"volume.attach_as: {found.volume_id} is still attached to "
                              f"{found.holder or 'another instance'} after {wait:.0f} s: let go of "
                              "it there (bingo-host release-volume) or detach it, then rerun")
        elif not said:
            log.info(f"volume: waiting for {found.holder or 'EC2'} to let go of {found.volume_id}")
            said = True
        sleep(interval)
    while True:  # EC2 attaches asynchronously
        vol = call(ec2, "DescribeVolumes", VolumeIds=[found.volume_id])["Volumes"][0]
        states = [a.get("State") for a in vol.get("Attachments") or []
                  if a.get("InstanceId") == ident.instance_id]
        if "attached" in states:
            return found.volume_id
        if clock() >= deadline:
            raise AttachError(f"volume.attach_as: {found.volume_id} is not attached to "
                              f"{ident.instance_id} after {wait:.0f} s (attachment {states})")
        sleep(interval)


def identity(imds: IMDS | None = None) -> Identity:
    return (imds or IMDS()).identity()
