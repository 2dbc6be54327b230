"""bootstrap's own attach of the data volume (bingo_host/ebs_attach.py) against moto, through the
loopback proxy: which volume (the stack's tag, the role, the zone), waiting for a detach
elsewhere, and the refusals. The clock is the test's, so the waits take no time.
tests/test_restore_host.py attaches for real on a replacement test host."""

from __future__ import annotations

import boto3
import pytest

from bingo_host import ebs_attach
from bingo_host.restore import ebs as restore_ebs
from bingo_host.facts.imds import Identity
from tests.aws_servers import AZ, REGION

STACK = "bingo-prod"
DATA_TAGS = [{"Key": "bingo-host:stack", "Value": STACK}, {"Key": "bingo-host:role", "Value": "database"}]


class Clock:
    """time.monotonic and time.sleep for attach(); each sleep may run what EC2 does meanwhile."""

    def __init__(self, during_sleep=None):
        self.now, self.slept, self.during_sleep = 0.0, 0, during_sleep

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += 1
        if self.during_sleep:
            self.during_sleep(self.slept)


def new_instance(ec2, zone=AZ, stack=STACK) -> Identity:
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "bingo-host:stack", "Value": stack}]}] \
        if stack else []
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                             Placement={"AvailabilityZone": zone}, TagSpecifications=tags)
    return Identity(inst["Instances"][0]["InstanceId"], REGION, zone)


def data_volume(ec2, zone=AZ, tags=DATA_TAGS) -> str:
    return ec2.create_volume(Size=2, AvailabilityZone=zone, TagSpecifications=[
        {"ResourceType": "volume", "Tags": tags}])["VolumeId"]


def attached_to(ec2, vol: str) -> list[str]:
    (v,) = ec2.describe_volumes(VolumeIds=[vol])["Volumes"]
    return [a["InstanceId"] for a in v["Attachments"] if a["State"] == "attached"]


def attach(ec2, ident, clock=None, wait=60.0):
    clock = clock or Clock()
    return ebs_attach.attach(ident, "/dev/sdf", ec2=ec2, wait=wait, sleep=clock.sleep, clock=clock)


@pytest.fixture
def ec2(aws_env, moto_server):
    moto_server.reset()
    return boto3.client("ec2", region_name=REGION)  # through the proxy aws_env names


def test_attaches_the_stacks_volume_in_its_zone_and_a_rerun_calls_nothing(ec2, aws_env):
    ident = new_instance(ec2)
    vol = data_volume(ec2)
    data_volume(ec2, tags=[{"Key": "bingo-host:stack", "Value": "another-stack"},
                           {"Key": "bingo-host:role", "Value": "database"}])
    data_volume(ec2, tags=DATA_TAGS[:1])  # this stack's, but not its data volume
    assert attach(ec2, ident) == vol
    assert attached_to(ec2, vol) == [ident.instance_id]
    calls = len(aws_env["proxy"].calls)
    assert attach(ec2, ident) == vol
    assert "AttachVolume" not in [a for _, a in aws_env["proxy"].calls[calls:]]


def test_waits_while_another_instance_holds_it_then_attaches(ec2):
    old, ident = new_instance(ec2), new_instance(ec2)
    vol = data_volume(ec2)
    ec2.attach_volume(VolumeId=vol, InstanceId=old.instance_id, Device="/dev/sdf")

    def release(slept):
        if slept == 3:  # the old instance's release-volume, some seconds later
            ec2.detach_volume(VolumeId=vol, InstanceId=old.instance_id)
    clock = Clock(release)
    assert attach(ec2, ident, clock) == vol
    assert attached_to(ec2, vol) == [ident.instance_id] and clock.slept >= 3


def test_held_elsewhere_past_the_wait_names_the_holder_and_changes_nothing(ec2):
    old, ident = new_instance(ec2), new_instance(ec2)
    vol = data_volume(ec2)
    ec2.attach_volume(VolumeId=vol, InstanceId=old.instance_id, Device="/dev/sdf")
    with pytest.raises(ebs_attach.AttachError, match=f"{vol} is still attached to "
                                                     f"{old.instance_id} after 10 s.*release-volume"):
        attach(ec2, ident, wait=10.0)
    assert attached_to(ec2, vol) == [old.instance_id]


def test_a_volume_in_another_zone_is_named_not_attached(ec2):
    ident = new_instance(ec2)
    vol = data_volume(ec2, zone=REGION + "b")
    with pytest.raises(ebs_attach.AttachError, match=f"no volume carries .* in {AZ}; there is "
                                                     f"{vol} in {REGION}b"):
        attach(ec2, ident)
    assert attached_to(ec2, vol) == []


def test_two_tagged_volumes_are_refused_by_name(ec2):
    ident = new_instance(ec2)
    a, b = data_volume(ec2), data_volume(ec2)
    with pytest.raises(ebs_attach.AttachError) as err:
        attach(ec2, ident)
    assert "2 volumes carry" in str(err.value) and a in str(err.value) and b in str(err.value)
    assert "remove bingo-host:role" in str(err.value)
    assert attached_to(ec2, a) == attached_to(ec2, b) == []


def test_no_tagged_volume_is_a_clear_error(ec2):
    ident = new_instance(ec2)
    with pytest.raises(ebs_attach.AttachError, match="no volume carries bingo-host:stack=bingo-prod "
                                                     f"and bingo-host:role=database in {AZ}"):
        attach(ec2, ident)


def test_an_instance_without_a_stack_tag_is_refused(ec2):
    ident = new_instance(ec2, stack=None)
    data_volume(ec2)
    with pytest.raises(ebs_attach.AttachError, match="carries no bingo-host:stack tag"):
        attach(ec2, ident)


@pytest.mark.parametrize("mark", ["bingo-host:replaced-by", "bingo-host:restore-failed"])
def test_a_volume_a_restore_marked_is_never_chosen(ec2, mark):
    """Even when the restore died before it dropped the role: the restored volume wins."""
    ident = new_instance(ec2)
    data_volume(ec2, tags=DATA_TAGS + [{"Key": mark, "Value": "vol-0123456789abcdef0"}])
    restored = data_volume(ec2)
    assert attach(ec2, ident) == restored


def test_a_volume_attached_here_wins_over_a_second_candidate(ec2):
    """Mid-restore the new volume and the old one both carry the role: the one attached here is
    the data volume, and nothing is called to change that."""
    ident = new_instance(ec2)
    data_volume(ec2)
    restored = data_volume(ec2)
    ec2.attach_volume(VolumeId=restored, InstanceId=ident.instance_id, Device="/dev/sdf")
    assert ebs_attach.locate(ident, ec2=ec2) == ebs_attach.Found(restored, STACK, "here")


def test_the_volume_a_restore_replaced_loses_only_its_role_and_is_not_attached(ec2):
    """restore's end (restore/ebs.drop_role): the stack tag stays (IAM lets the instance move and
    tag only its stack's volumes), the role goes, and a replacement takes the restored volume."""
    ident = new_instance(ec2)
    old, restored = data_volume(ec2), data_volume(ec2)
    restore_ebs.drop_role(ec2, ec2.describe_volumes(VolumeIds=[old])["Volumes"][0])
    tags = {t["Key"]: t["Value"] for t in ec2.describe_volumes(VolumeIds=[old])["Volumes"][0]["Tags"]}
    assert tags == {"bingo-host:stack": STACK}
    assert attach(ec2, ident) == restored
