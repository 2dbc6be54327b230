"""`bingo-host restore --snapshot` refusals and plan, against moto (through the loopback proxy)
and the IMDSv2 test server: everything here is decided before the host is touched, so it runs
without a test host. tests/test_restore_host.py restores for real on the systemd test host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.aws_servers import AZ, REGION

REPO = Path(__file__).resolve().parent.parent


def restore(tmp_path, *args):
    config = tmp_path / "config.yaml"
    if not config.exists():
        config.write_text("platform: debian12\nvolume: {device: /dev/sdf}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "bingo_host", "--config", str(config), "restore",
                           *args], capture_output=True, text=True, timeout=120, env=env)


def volume_count(ec2) -> int:
    return len(ec2.describe_volumes()["Volumes"])


@pytest.fixture
def snap(ec2_instance):
    ec2 = ec2_instance.client()
    return ec2.create_snapshot(VolumeId=ec2_instance.data_volume)["SnapshotId"]


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path, ec2_instance, snap):
    ec2 = ec2_instance.client()
    before = volume_count(ec2)
    r = restore(tmp_path, "--snapshot", snap, "--dry-run")
    assert r.returncode == 0, r.stderr
    for word in ("create", "stop", "detach", "attach", "adopt", "check"):
        assert f"  {word} " in r.stdout, r.stdout
    assert ec2_instance.data_volume in r.stdout and "nothing was changed" in r.stdout
    assert volume_count(ec2) == before


def test_a_snapshot_of_another_volume_is_refused_unless_forced(tmp_path, ec2_instance):
    ec2 = ec2_instance.client()
    other = ec2.create_volume(Size=2, AvailabilityZone=AZ)["VolumeId"]
    foreign = ec2.create_snapshot(VolumeId=other)["SnapshotId"]
    r = restore(tmp_path, "--snapshot", foreign, "--dry-run")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{foreign} is a snapshot of {other}, not of this host's data volume" in r.stderr
    assert "--force" in r.stderr
    forced = restore(tmp_path, "--snapshot", foreign, "--dry-run", "--force")
    assert forced.returncode == 0, forced.stderr


def test_a_snapshot_of_a_volume_the_data_volume_replaced_is_this_hosts(tmp_path, ec2_instance):
    """The lineage tag a restore leaves on the new volume keeps the older volumes' snapshots
    restorable after a restore."""
    ec2 = ec2_instance.client()
    earlier = ec2.create_volume(Size=2, AvailabilityZone=AZ)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=earlier)["SnapshotId"]
    ec2.create_tags(Resources=[ec2_instance.data_volume],
                    Tags=[{"Key": "bingo-host:lineage", "Value": f"vol-0aaaaaaaaaaaaaaaa {earlier}"}])
    r = restore(tmp_path, "--snapshot", snap, "--dry-run")
    assert r.returncode == 0, r.stderr


def test_an_availability_zone_that_differs_is_refused(tmp_path, ec2_instance, snap, imds_server):
    imds_server.availability_zone = REGION + "b"
    r = restore(tmp_path, "--snapshot", snap, "--dry-run")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"is in {AZ}, but the instance metadata says this instance is in {REGION}b" in r.stderr


@pytest.mark.parametrize("args, message", [
    ([], "--snapshot or --dump: give exactly one"),
    (["--snapshot", "snap-12"], "--snapshot: an EBS snapshot id"),
    (["--snapshot", "-snap-0123456789abcdef0"], "--snapshot: an EBS snapshot id"),
])
def test_bad_snapshot_ids_are_refused(tmp_path, args, message):
    r = restore(tmp_path, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_an_unknown_snapshot_is_refused(tmp_path, ec2_instance):
    r = restore(tmp_path, "--snapshot", "snap-0123456789abcdef0", "--dry-run")
    assert r.returncode == 2 and "no such snapshot" in r.stderr, r.stderr


def test_an_external_database_has_nothing_to_restore(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "platform: debian12\ndatabase: {host: db.internal.example.com, password: 'ssm:/bingo/db'}\n")
    r = restore(tmp_path, "--snapshot", "snap-0123456789abcdef0", "--dry-run")
    assert r.returncode == 2 and r.stderr.startswith("bingo-host: error: database.host:"), r.stderr


def _cli(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "bingo_host", "--config", str(tmp_path / "config.yaml"),
                           *args], capture_output=True, text=True, timeout=120, env=env)


def test_release_volume_dry_run_names_the_data_volume_and_detaches_nothing(tmp_path, ec2_instance):
    (tmp_path / "config.yaml").write_text("platform: debian12\nvolume: {device: /dev/sdf}\n")
    r = _cli(tmp_path, "release-volume", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"detach {ec2_instance.data_volume} (/dev/sdf) from {ec2_instance.instance_id}" in r.stdout
    (vol,) = ec2_instance.client().describe_volumes(VolumeIds=[ec2_instance.data_volume])["Volumes"]
    assert vol["State"] == "in-use"
