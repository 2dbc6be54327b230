"""Retention as data: which snapshots `expired` picks from a DescribeSnapshots answer (a table of
cases, no host), then `prune`'s EC2 calls against moto behind the test proxy (deleted, kept in
use, another stack's untouched, dry run) and over DescribeSnapshots pages."""

from __future__ import annotations

import datetime

import pytest

from bingo_host.snapshot import SnapshotError
from bingo_host.snapshot.retention import expired, prune, stack_snapshots

VOL = "vol-0aaa"
STACK = "bingo-prod"
T0 = datetime.datetime(2026, 12, 1, 3, 0, tzinfo=datetime.timezone.utc)


def snap(sid: str, hours: int, *, stack: str | None = STACK, volume: str = VOL,
         tags: dict[str, str] | None = None) -> dict:
    """One snapshot as DescribeSnapshots describes it, `hours` after T0."""
    tag_list = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]
    if stack is not None:
        tag_list.append({"Key": "bingo-host:stack", "Value": stack})
    return {"SnapshotId": sid, "VolumeId": volume, "StartTime": T0 + datetime.timedelta(hours=hours),
            "State": "completed", "Tags": tag_list}


FOUR = [snap("snap-1", 1), snap("snap-2", 2), snap("snap-3", 3), snap("snap-4", 4)]

CASES = {
    # name: (snapshots, keep, expected ids to delete, newest first)
    "none": ([], 3, []),
    "fewer than keep": (FOUR[:2], 3, []),
    "exactly keep": (FOUR[:3], 3, []),
    "one past keep: the oldest goes": (FOUR, 3, ["snap-1"]),
    "keep 1: all but the newest, newest first": (FOUR, 1, ["snap-3", "snap-2", "snap-1"]),
    "order of the answer does not matter": (FOUR[::-1], 2, ["snap-2", "snap-1"]),
    "by time, not by id": ([snap("snap-b", 1), snap("snap-a", 2), snap("snap-c", 3)], 2, ["snap-b"]),
    "same time: the id breaks the tie": (
        [snap("snap-a", 5), snap("snap-c", 5), snap("snap-b", 5)], 1, ["snap-b", "snap-a"]),
    "another stack's are neither kept nor deleted": (
        [*FOUR[:2], snap("snap-x", 9, stack="bingo-staging"), snap("snap-y", 10, stack="bingo-prod2"),
         snap("snap-z", 11, stack="bingo")], 1, ["snap-1"]),
    "untagged and hand-made stay": (
        [*FOUR[:2], snap("snap-h", 0, stack=None), snap("snap-m", 0, stack=None, tags={"bingo-host:managed": "true"})],
        1, ["snap-1"]),
    "another volume's stay": ([*FOUR[:2], snap("snap-v", 0, volume="vol-0bbb")], 1, ["snap-1"]),
    "a snapshot without tags at all": ([*FOUR[:2], {**snap("snap-t", 0), "Tags": []},
                                        {k: v for k, v in snap("snap-u", 0).items() if k != "Tags"}],
                                       1, ["snap-1"]),
}


@pytest.mark.parametrize("snapshots, keep, expected", CASES.values(), ids=CASES.keys())
def test_expired(snapshots, keep, expected):
    assert expired(snapshots, VOL, STACK, keep) == expected


def test_expired_leaves_the_answer_as_it_was():
    answer = FOUR[::-1]
    expired(answer, VOL, STACK, 1)
    assert [s["SnapshotId"] for s in answer] == ["snap-4", "snap-3", "snap-2", "snap-1"]


class RecordedPages:
    """DescribeSnapshots answered from recorded pages (moto answers in one page), each request kept."""

    def __init__(self, pages: list[dict]):
        self.pages = pages
        self.requests: list[dict] = []

    def describe_snapshots(self, **kwargs):
        self.requests.append(kwargs)
        return self.pages[len(self.requests) - 1]


def test_stack_snapshots_reads_every_page_with_its_token():
    client = RecordedPages([{"Snapshots": FOUR[:2], "NextToken": "t1"},
                            {"NextToken": "t2"},  # an empty page may come without the list
                            {"Snapshots": FOUR[2:]}])
    assert stack_snapshots(client, VOL, STACK) == FOUR
    filters = [{"Name": "volume-id", "Values": [VOL]}, {"Name": "tag:bingo-host:stack", "Values": [STACK]}]
    assert client.requests == [{"OwnerIds": ["self"], "Filters": filters},
                               {"OwnerIds": ["self"], "Filters": filters, "NextToken": "t1"},
                               {"OwnerIds": ["self"], "Filters": filters, "NextToken": "t2"}]


def test_prune_over_pages_deletes_past_keep_across_them():
    client = RecordedPages([{"Snapshots": FOUR[:2], "NextToken": "t1"}, {"Snapshots": FOUR[2:]}])
    assert prune(client, VOL, STACK, 3, dry_run=True) == ["snap-1"]


# -- against moto, through the proxy --

def make_snapshots(ec2, volume: str, stack: str | None, n: int) -> list[str]:
    tags = [{"ResourceType": "snapshot", "Tags": [{"Key": "bingo-host:stack", "Value": stack}]}] if stack else []
    return [ec2.create_snapshot(VolumeId=volume, TagSpecifications=tags)["SnapshotId"] for _ in range(n)]


def remaining(ec2, volume: str) -> set[str]:
    return {s["SnapshotId"] for s in ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [volume]}])["Snapshots"]}


def test_prune_deletes_past_keep_and_nothing_else(ec2_instance):
    ec2 = ec2_instance.client()
    ours = make_snapshots(ec2, ec2_instance.data_volume, STACK, 4)
    theirs = make_snapshots(ec2, ec2_instance.data_volume, "bingo-staging", 2) \
        + make_snapshots(ec2, ec2_instance.data_volume, None, 1) \
        + make_snapshots(ec2, ec2_instance.root_volume, STACK, 2)
    assert prune(ec2, ec2_instance.data_volume, STACK, 2, dry_run=True) != []
    assert remaining(ec2, ec2_instance.data_volume) == set(ours + theirs[:3])  # dry run: nothing goes
    warnings: list[str] = []
    deleted = prune(ec2, ec2_instance.data_volume, STACK, 2, warnings=warnings)
    assert len(deleted) == 2 and set(deleted) <= set(ours) and warnings == []
    assert remaining(ec2, ec2_instance.data_volume) == set(ours + theirs[:3]) - set(deleted)
    assert len(remaining(ec2, ec2_instance.root_volume)) == 2
    assert prune(ec2, ec2_instance.data_volume, STACK, 2) == []  # again: nothing more


class InUse:
    """The proxy answers DeleteSnapshot of one snapshot as EC2 does for one an AMI uses."""

    def __init__(self, snapshot_id: str, code: str = "InvalidSnapshot.InUse"):
        self.snapshot_id, self.code = snapshot_id, code

    def before(self, action, form):
        if action == "DeleteSnapshot" and form.get("SnapshotId") == [self.snapshot_id]:
            return 400, self.code
        return None

    def after(self, *args):
        pass


def test_a_snapshot_in_use_is_kept_with_a_warning(ec2_instance, ec2_proxy):
    ec2 = ec2_instance.client()
    ours = make_snapshots(ec2, ec2_instance.data_volume, STACK, 3)
    in_use = expired(stack_snapshots(ec2, ec2_instance.data_volume, STACK), ec2_instance.data_volume,
                     STACK, 1)[0]
    ec2_proxy.hooks.append(InUse(in_use))
    warnings: list[str] = []
    deleted = prune(ec2, ec2_instance.data_volume, STACK, 1, warnings=warnings)
    assert len(deleted) == 1 and in_use not in deleted
    assert len(warnings) == 1 and warnings[0].startswith(f"kept {in_use}: in use (")
    assert "InvalidSnapshot.InUse" in warnings[0]
    assert remaining(ec2, ec2_instance.data_volume) == set(ours) - set(deleted)
    assert prune(ec2, ec2_instance.data_volume, STACK, 1) == []  # no list to warn into: still kept


def test_any_other_refusal_stops_the_prune(ec2_instance, ec2_proxy):
    ec2 = ec2_instance.client()
    make_snapshots(ec2, ec2_instance.data_volume, STACK, 3)
    ec2_proxy.fail["DeleteSnapshot"] = (403, "UnauthorizedOperation")
    with pytest.raises(SnapshotError, match="AWS denied DeleteSnapshot"):
        prune(ec2, ec2_instance.data_volume, STACK, 1, warnings=[])
