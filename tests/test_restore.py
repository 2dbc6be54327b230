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
    (["--snapshot", "snap-12"], "--snapshot: must be an EBS snapshot id"),
    (["--snapshot", "-snap-0123456789abcdef0"], "--snapshot: must be an EBS snapshot id"),
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
    assert f"would detach {ec2_instance.data_volume} (/dev/sdf) from {ec2_instance.instance_id}" \
        in r.stdout, r.stdout
    assert "nothing was changed" in r.stdout
    (vol,) = ec2_instance.client().describe_volumes(VolumeIds=[ec2_instance.data_volume])["Volumes"]
    assert vol["State"] == "in-use"


def test_status_flags_an_unfinished_restore_and_reports_the_last(tmp_path):
    """A killed restore leaves its record: status is degraded and says which command finishes
    it; a finished one is reported (a rolled-back one as a warning), in the documented schema."""
    import json

    from bingo_host.status import checks, records, text
    from tests.status_schema import SCHEMA, validate

    unfinished, last = tmp_path / "restore.json", tmp_path / "last-restore.json"

    def report():
        r = checks.Report()
        records.check_restore(r, str(unfinished), str(last))
        section = r.data["restore"]
        assert validate(section, SCHEMA["properties"]["restore"], "$.restore") == []
        return section, {p["check"]: p for p in r.problems}

    assert report() == (None, {})
    unfinished.write_text(json.dumps({"schema": 1, "snapshot_id": "snap-0123456789abcdef0",
                                      "direction": "forward", "started_at": "2026-11-28T10:00:00+00:00"}))
    section, problems = report()
    assert section["unfinished"]["snapshot_id"] == "snap-0123456789abcdef0"
    assert problems["restore"]["severity"] == "error"
    assert "restore --snapshot snap-0123456789abcdef0` again" in problems["restore"]["message"]
    unfinished.unlink()
    last.write_text(json.dumps({"snapshot_id": "snap-0123456789abcdef0", "old_volume": "vol-1",
                                "new_volume": "vol-2", "ok": False, "rolled_back": True,
                                "error": "health check failed", "finished_at": "2026-11-28T10:05:00+00:00"}))
    section, problems = report()
    assert not section["last"]["ok"] and problems["restore"]["severity"] == "warning"
    assert "rolled back to vol-1: health check failed" in problems["restore"]["message"]
    last.write_text(json.dumps({"snapshot_id": "snap-0123456789abcdef0", "old_volume": "vol-1",
                                "new_volume": "vol-2", "ok": True, "finished_at": "2026-11-28T10:05:00+00:00"}))
    section, problems = report()
    assert section["last"]["ok"] and not problems
    empty = {"services": [], "storage": {"data_volume": None, "root": None}, "memory": None,
             "swap": None, "database": None, "release": None, "snapshot": None, "certificate": None,
             "http": [], "host": "h", "platform": "debian12", "time": "t", "verdict": "healthy"}
    shown = text.render_text({**empty, "restore": section, "problems": []})
    assert "last restore" in shown and "snap-0123456789abcdef0 at 2026-11-28T10:05:00+00:00" in shown
