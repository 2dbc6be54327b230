"""`bingo-host snapshot` on the bootstrapped systemd test host, through its systemd unit.

tests/test_snapshot.py covers the locking, freezing and failure paths in detail on a MariaDB of
its own; this runs what bootstrap installed: the timer's unit, the backup user and its password
file, the platform's socket and the data volume's mount point, with EC2 on moto (behind a proxy
that can stall CreateSnapshot) and IMDSv2 from the test server, all on 127.0.0.1.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

from tests.aws_servers import make_instance

UNIT = "bingo-host-snapshot.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/endpoints.conf"


@pytest.fixture
def snapshot_unit(bootstrapped, aws_env):
    """The unit pointed at the local stand-ins with a drop-in, as an operator would."""
    host = bootstrapped.host
    aws_env["moto"].reset()
    instance = make_instance(data_device=bootstrapped.volume.device)
    aws_env["imds"].instance_id = instance.instance_id
    aws_env["imds"].region = instance.region
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ENDPOINT_URL_EC2": aws_env["proxy"].url, "AWS_ENDPOINT_URL": aws_env["moto"].url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": aws_env["imds"].url, "NO_PROXY": "127.0.0.1"}
    host.put_file(DROPIN, "[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in env.items()))
    host.run(["systemctl", "daemon-reload"])
    try:
        yield instance
    finally:
        host.run(["rm", "-f", DROPIN])
        host.run(["systemctl", "daemon-reload"])


def app_sql(host, sql, **kw):
    password = host.read_file("/etc/bingo-host/db-password").strip()
    return ["mariadb", "-u", "bingoapp", "bingo", "-e", sql], {"env": {"MYSQL_PWD": password}, **kw}


def test_snapshot_unit_takes_tagged_snapshots_and_leaves_everything_writable(bootstrapped, snapshot_unit):
    host, instance = bootstrapped.host, snapshot_unit
    run = host.run(["systemctl", "start", UNIT], check=False, timeout=300)
    journal = host.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout
    assert run.returncode == 0, journal
    state = json.loads(host.read_file("/var/lib/bingo-host/last-snapshot.json"))
    assert state["ok"] and not state.get("error"), state
    assert state["freeze_ms"] is not None and state["freeze_ms"] < 5000
    ec2 = boto3.client("ec2", region_name=instance.region)
    snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{
        "Name": "volume-id", "Values": [instance.data_volume, instance.root_volume]}])["Snapshots"]
    by_volume = {s["VolumeId"]: s for s in snaps}
    assert set(by_volume) == {instance.data_volume}  # snapshots.volumes: data, the default
    tags = {t["Key"]: t["Value"] for t in by_volume[instance.data_volume]["Tags"]}
    assert tags["bingo-host:stack"] == instance.instance_id  # no stack made this instance
    assert tags["bingo-host:mountpoint"] == "/var/lib/mysql"
    assert tags["bingo-host:instance"] == instance.instance_id
    host.run(["touch", "/var/lib/mysql/after-snapshot"])
    host.run(["rm", "/var/lib/mysql/after-snapshot"])
    cmd, kw = app_sql(host, "CREATE TABLE IF NOT EXISTS snap_probe (id INT); INSERT INTO snap_probe VALUES (1)",
                      check=False, timeout=30)
    write = host.run(cmd, **kw)
    assert write.returncode == 0, write.stderr
    assert host.read_file("/etc/bingo-host/db-password").strip() not in journal


def test_writes_wait_while_create_snapshot_is_in_flight(bootstrapped, snapshot_unit, aws_env):
    """The database lock and the freeze are really held until EC2 has the request."""
    host, proxy = bootstrapped.host, aws_env["proxy"]
    cmd, kw = app_sql(host, "CREATE TABLE IF NOT EXISTS snap_order (at DOUBLE)")
    host.run(cmd, **kw)
    proxy.stall["CreateSnapshot"] = 3.0  # under the frozen call's read timeout: it succeeds
    unit = host.popen(["systemctl", "start", UNIT])
    try:
        assert proxy.event("CreateSnapshot").wait(120), "CreateSnapshot never arrived"
        requested = time.time()
        cmd, kw = app_sql(host, "INSERT INTO snap_order VALUES (UNIX_TIMESTAMP(NOW(6)))")
        commit = host.popen(cmd, env=kw["env"])
        file_write = host.popen(["sh", "-c", "echo x > /var/lib/mysql/frozen-probe"])
        root_write = host.run(["sh", "-c", "echo x > /root/not-frozen"], timeout=5)  # / is never frozen
        assert root_write.returncode == 0
        time.sleep(1.5)
        assert commit.poll() is None, "the commit went through while the snapshot was being taken"
        assert file_write.poll() is None, "the data mount took a write while frozen"
        while commit.poll() is None and time.time() < requested + 60:
            time.sleep(0.02)
        committed = time.time()
        assert commit.returncode == 0 and file_write.wait(timeout=30) == 0
        assert unit.wait(timeout=120) == 0
    finally:
        proxy.stall.pop("CreateSnapshot", None)
        host.run(["rm", "-f", "/var/lib/mysql/frozen-probe", "/root/not-frozen"])
    # It waited for EC2 to accept CreateSnapshot (stalled 3 s), then went through.
    assert requested + 2.5 < committed < requested + 30
    cmd, kw = app_sql(host, "SELECT COUNT(*) FROM snap_order")
    assert host.run([*cmd[:-2], "-N", "-B", *cmd[-2:]], **kw).stdout.strip() == "1"
