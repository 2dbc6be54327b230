"""Replacing the instance (issue 12): the data volume outlives it and serves the same rows.

Two systemd test hosts in turn play the old and the new instance; moto has both instances and
the one data volume, which tests/ebs_shim.py backs with the same image throughout. The old
instance lets go (`bingo-host release-volume`: its users stopped, unmounted, detached: the shim
refuses a detach while mounted and an attach while attached, as EC2 does), then the volume is
attached to the new instance and its bootstrap adopts it.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.aws_servers import AZ, EC2Proxy, IMDSServer, make_instance
from tests.conftest import BIN, CONFIG, host_config
from tests.ebs_shim import EbsShim, attachment_link
from tests.ec2_site import DEVICE, Site


def test_a_new_instance_adopts_the_released_volume_and_serves_the_same_rows(host_pool, moto_server,
                                                                             tmp_path, monkeypatch):
    proxy, imds = EC2Proxy(moto_server.url).start(), IMDSServer().start()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_ENDPOINT_URL_EC2": proxy.url, "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ENDPOINT_URL_EC2": proxy.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
           "NO_PROXY": "127.0.0.1"}
    ec2 = boto3.client("ec2", region_name=AZ[:-1], endpoint_url=proxy.url)
    shim = old_host = new_host = None
    try:
        moto_server.reset()
        old_host = host_pool.fresh()
        shim = EbsShim(old_host, proxy, tmp_path / "ebs")
        old = make_instance(data_device=DEVICE)
        imds.instance_id = old.instance_id
        old_host.put_file(CONFIG, host_config(attachment_link(DEVICE)), mode=0o600)
        first = old_host.run([BIN, "bootstrap"], check=False, timeout=1800)
        assert first.returncode == 0, first.stdout + first.stderr
        site = Site(old_host, proxy, imds, shim, old, env)
        site.sql("CREATE TABLE games (id INT PRIMARY KEY, note VARCHAR(32)); "
                 "INSERT INTO games VALUES (1, 'kept-1'), (2, 'kept-2')")

        new_id = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                                   Placement={"AvailabilityZone": AZ})["Instances"][0]["InstanceId"]
        with pytest.raises(ClientError, match="VolumeInUse"):  # EC2's order: detach first
            ec2.attach_volume(VolumeId=old.data_volume, InstanceId=new_id, Device=DEVICE)
        shim.violations.clear()

        dry = site.bingo("release-volume", "--dry-run")
        assert dry.returncode == 0 and old.data_volume in dry.stdout, dry.stdout + dry.stderr
        assert ec2.describe_volumes(VolumeIds=[old.data_volume])["Volumes"][0]["State"] == "in-use"
        released = site.bingo("release-volume")
        assert released.returncode == 0, released.stdout + released.stderr
        (vol,) = ec2.describe_volumes(VolumeIds=[old.data_volume])["Volumes"]
        assert vol["State"] == "available" and not shim.violations
        assert {t["Key"]: t["Value"] for t in vol["Tags"]}["bingo-host:released-from"] == old.instance_id
        assert old_host.run(["systemctl", "is-active", "mariadb"], check=False).stdout.strip() != "active"
        again = site.bingo("release-volume")
        assert again.returncode == 0 and "nothing to release" in again.stdout
        old_host.shutdown()

        new_host = host_pool.fresh()
        shim.move_to(new_host)
        ec2.attach_volume(VolumeId=old.data_volume, InstanceId=new_id, Device=DEVICE)
        imds.instance_id = new_id
        new_host.put_file(CONFIG, host_config(attachment_link(DEVICE)), mode=0o600)
        boot = new_host.run([BIN, "bootstrap"], check=False, timeout=1800)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        # adopted: never formatted, MariaDB's datadir not initialised again
        assert "create ext4" not in boot.stdout and "initialise" not in boot.stdout, boot.stdout
        new_instance = type(old)(new_id, old.root_volume, old.data_volume)
        site = Site(new_host, proxy, imds, shim, new_instance, env)
        assert site.rows() == ["kept-1", "kept-2"]
        site.serving()
    finally:
        if shim:
            shim.close()
        for h in (old_host, new_host):
            if h:
                h.shutdown()
        proxy.stop()
        imds.stop()
