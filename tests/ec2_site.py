"""A bootstrapped test host seen as an EC2 instance: moto's EC2 through a proxy, the IMDS, and
tests/ebs_shim.py backing its data volume (attached at DEVICE) with a loop device. `Site` runs
bingo-host there with that environment and reads back the rows, the volumes and what serves."""

from __future__ import annotations

import boto3

from tests.conftest import BIN

DEVICE = "/dev/sdf"


class Site:
    def __init__(self, host, proxy, imds, shim, instance, env):
        self.host, self.proxy, self.imds, self.shim = host, proxy, imds, shim
        self.instance, self.env = instance, env
        self.ec2 = boto3.client("ec2", region_name=instance.region, endpoint_url=proxy.url)

    def bingo(self, *args, check=False, timeout=600):
        return self.host.run([BIN, *args], env=self.env, check=check, timeout=timeout)

    def sql(self, statement: str) -> str:
        password = self.host.read_file("/etc/bingo-host/db-password").strip()
        return self.host.run(["mariadb", "-u", "bingoapp", "-N", "-B", "bingo", "-e", statement],
                             env={"MYSQL_PWD": password}, timeout=60).stdout.strip()

    def rows(self) -> list[str]:
        return self.sql("SELECT note FROM games ORDER BY id").split()

    def data_volume(self) -> dict:
        vols = self.ec2.describe_volumes(Filters=[
            {"Name": "attachment.instance-id", "Values": [self.instance.instance_id]}])["Volumes"]
        (vol,) = [v for v in vols if v["Attachments"][0]["Device"] == DEVICE]
        return vol

    def restored_volumes(self, snap: str) -> list[dict]:
        return self.ec2.describe_volumes(Filters=[
            {"Name": "tag:bingo-host:restored-from", "Values": [snap]}])["Volumes"]

    def serving(self) -> None:
        """nginx answers (over HTTPS when it redirects there), MariaDB runs on the data volume the shim backs with its loop device."""
        page = self.host.run(["curl", "-sS", "-k", "-L", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://127.0.0.1/"], check=False)  # -L: to HTTPS, when served
        assert page.stdout == "200", page
        for unit in ("mariadb", "bingo-uwsgi", "nginx"):
            assert self.host.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active"
        vol = self.data_volume()
        source = self.host.run(["findmnt", "-rn", "-o", "SOURCE", "/var/lib/mysql"]).stdout.strip()
        assert source == self.shim.device(vol["VolumeId"]), (source, vol["VolumeId"])
        assert not self.shim.violations
