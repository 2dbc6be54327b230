"""`bingo-host snapshot` on the bootstrapped systemd test host, through its systemd unit.

tests/test_snapshot.py proves the locking and freezing in detail on a MariaDB of its own; this
checks the pieces bootstrap provides: the timer's unit, the backup user and its password file,
the platform's socket, and the data volume's mount point.
"""

from __future__ import annotations

import json

import boto3

from tests.aws_servers import make_instance

UNIT = "bingo-host-snapshot.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/endpoints.conf"


def test_snapshot_unit_takes_consistent_snapshots_on_the_host(bootstrapped, aws_env, monkeypatch):
    host, ti = bootstrapped.host, bootstrapped.host.testinfra
    aws_env["moto"].reset()
    instance = make_instance(data_device=bootstrapped.volume.device)
    aws_env["imds"].instance_id = instance.instance_id
    aws_env["imds"].region = instance.region
    # How an operator points the unit somewhere else: a drop-in with the standard variables.
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ENDPOINT_URL_EC2": aws_env["proxy"].url, "AWS_ENDPOINT_URL": aws_env["moto"].url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": aws_env["imds"].url, "NO_PROXY": "127.0.0.1"}
    host.put_file(DROPIN, "[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in env.items()))
    try:
        host.run(["systemctl", "daemon-reload"])
        run = host.run(["systemctl", "start", UNIT], check=False, timeout=300)
        journal = host.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout
        assert run.returncode == 0, journal
        state = json.loads(host.read_file("/var/lib/bingo-host/last-snapshot.json"))
        assert state["ok"] and not state.get("error"), state
        assert state["freeze_ms"] is not None and state["freeze_ms"] < 5000
        ec2 = boto3.client("ec2", region_name=instance.region)
        snaps = ec2.describe_snapshots(Filters=[{"Name": "tag:bingo-host:managed", "Values": ["true"]}])["Snapshots"]
        by_volume = {s["VolumeId"]: s for s in snaps}
        assert set(by_volume) == {instance.data_volume, instance.root_volume}
        tags = {t["Key"]: t["Value"] for t in by_volume[instance.data_volume]["Tags"]}
        assert tags["bingo-host:mountpoint"] == "/var/lib/mysql"
        assert tags["bingo-host:instance"] == instance.instance_id
        # Thawed and unlocked afterwards: the volume and the database take writes.
        host.run(["touch", "/var/lib/mysql/after-snapshot"])
        host.run(["rm", "/var/lib/mysql/after-snapshot"])
        password = ti.file("/etc/bingo-host/db-password").content_string.strip()
        write = host.run(["mariadb", "-u", "bingoapp", "bingo", "-e",
                          "CREATE TABLE IF NOT EXISTS snap_probe (id INT); INSERT INTO snap_probe VALUES (1)"],
                         env={"MYSQL_PWD": password}, check=False, timeout=30)
        assert write.returncode == 0, write.stderr
        assert password not in journal
    finally:
        host.run(["rm", "-f", DROPIN])
        host.run(["systemctl", "daemon-reload"])
