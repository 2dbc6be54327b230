"""`bingo-host restore --snapshot` on the systemd test host, for real.

The host is bootstrapped with an EBS data volume that moto knows and tests/ebs_shim.py backs
with a loop device (by-id links as on Nitro; volume.device is the attachment's link, as
/dev/sdf is on AL2023). MariaDB rows are written, `bingo-host snapshot` takes the snapshot
(locked and frozen, the image copied when EC2 gets CreateSnapshot), more rows are written,
and the restore must bring back exactly the rows of the snapshot, also when it is SIGKILLed
at any step and run again; a restore that fails puts the old volume back, serving.

Last, the instance is replaced (issues 12, 22): the host lets go of its data volume (`bingo-host
release-volume`: its users stopped, unmounted, detached: the shim refuses a detach while mounted
and an attach while attached, as EC2 does), a second test host plays the new instance, and its
bootstrap attaches the volume itself, by the stack's tags (volume.attach_as, as single-instance.yaml
configures it): after the restores above that is the restored volume, not the first one, and it
serves the restored rows. Before it lets go, the old host gets its certificate at bootstrap
(pebble) and deploys a release, both kept on the data volume (deploy.keep_release), and a user
logs in; the new host's bootstrap serves that release over HTTPS with the same certificate, and
accepts the user's token: the app's secret_key comes from Secrets Manager (moto). The old host of
that test is this module's host, so the suite boots and bootstraps one host fewer.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.aws_servers import AZ, EC2Proxy, IMDSServer, make_instance
from tests.conftest import BIN, CONFIG, host_config
from tests.deploying import ENV, ROOT, Bundles
from tests.ebs_shim import BY_ID, EbsShim, attachment_link
from tests.ec2_site import DEVICE, Site
from tests.pebble import Pebble

DOMAIN = "bingo.example.com"
CA_INSIDE = "/root/pebble-ca.pem"

STACK = "bingo-test"
APP_INI = "/var/www/music-bingo/shared/bingo.ini"


def site_config(secret_arn: str) -> str:
    """single-instance.yaml's way: the volume attached by bootstrap, the secret_key a secret."""
    return host_config(attachment_link(DEVICE), volume={"attach_as": DEVICE},
                       musicbingo={"secret_key": f"secretsmanager:{secret_arn}"})


def secret_key(host) -> str:
    (line,) = [ln for ln in host.read_file(APP_INI).splitlines() if ln.startswith("secret_key")]
    return line.split("=", 1)[1].strip()


class Gate:
    """Holds EC2's answer to one action (after moto carried it out) until released: the
    restore is killed while it waits, so its re-run never heard the answer."""

    def __init__(self, action: str):
        self.action, self.reached, self.open = action, threading.Event(), threading.Event()

    def before(self, action, form):
        return None

    def after(self, action, form, status, body):
        if action == self.action:
            self.reached.set()
            self.open.wait(60)


@pytest.fixture(scope="module")
def site(host_pool, moto_server, tmp_path_factory):
    host = host_pool.fresh()
    proxy, imds, shim = EC2Proxy(moto_server.url).start(), IMDSServer().start(), None
    mp = pytest.MonkeyPatch()
    try:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_ENDPOINT_URL_EC2": proxy.url, "NO_PROXY": "127.0.0.1"}.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY"):
            mp.delenv(name, raising=False)
        moto_server.reset()
        shim = EbsShim(host, proxy, tmp_path_factory.mktemp("ebs"))  # outlives the host
        instance = make_instance(data_device=DEVICE)  # through the proxy: the shim backs it
        ec2 = boto3.client("ec2", region_name=instance.region)
        ec2.create_tags(Resources=[instance.instance_id], Tags=[{"Key": "bingo-host:stack", "Value": STACK}])
        ec2.create_tags(Resources=[instance.data_volume], Tags=[
            {"Key": "bingo-host:stack", "Value": STACK}, {"Key": "bingo-host:role", "Value": "database"}])
        secret = boto3.client("secretsmanager", region_name=instance.region,
                              endpoint_url=moto_server.url).create_secret(
            Name=f"{STACK}-secret-key", SecretString="k3y-" + "0123456789abcdef" * 4)["ARN"]
        imds.instance_id, imds.region = instance.instance_id, instance.region
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_ENDPOINT_URL_EC2": proxy.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
               "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_server.url,
               "NO_PROXY": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        host.put_file(CONFIG, site_config(secret), mode=0o600)
        first = host.run([BIN, "bootstrap"], env=env, check=False, timeout=1800)
        assert first.returncode == 0, first.stdout + first.stderr
        site = Site(host, proxy, imds, shim, instance, env)
        site.secret = secret
        yield site
    finally:
        if shim:
            shim.close()
        host.shutdown()
        proxy.stop()
        imds.stop()
        mp.undo()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory):
    p = Pebble.start(tmp_path_factory.mktemp("pebble"))
    yield p
    p.stop()


def kept_config(pebble, secret_arn: str) -> str:
    """site_config, and what single-instance.yaml adds: the release and certificate kept on the
    volume, HTTPS for a domain (pebble's ACME server here)."""
    return host_config(attachment_link(DEVICE), volume={"attach_as": DEVICE},
                       musicbingo={"secret_key": f"secretsmanager:{secret_arn}"}, deploy={"keep_release": True},
                       https={"domain": DOMAIN, "email": "ops@bingo.example.com", "server": pebble.directory})


def api(host, method: str, path: str, data: dict | None = None, token: str | None = None) -> tuple[int, str]:
    """The app's API over HTTPS through the host's nginx (curl inside: DOMAIN resolves to it)."""
    cmd = ["curl", "-sk", "--resolve", f"{DOMAIN}:443:127.0.0.1", "-X", method, "-w", "\n%{http_code}"]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(data)]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    body, _, code = host.run(cmd + [f"https://{DOMAIN}{path}"], check=False).stdout.rpartition("\n")
    return int(code or 0), body


def trust_pebble(host, pebble) -> None:
    """CA_INSIDE: the machine's CAs (pip's index) and pebble's (certbot), for REQUESTS_CA_BUNDLE."""
    machine = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    host.put_file(CA_INSIDE, machine + pebble.ca_cert.read_text())


def served_certificate(pebble) -> bytes:
    """The certificate 127.0.0.1:443 serves for DOMAIN, verified against pebble's root."""
    ctx = ssl.create_default_context(cadata=pebble.root_pem())
    with socket.create_connection(("127.0.0.1", 443), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=DOMAIN) as tls:
            return tls.getpeercert(binary_form=True)


@pytest.fixture(scope="module")
def snap(site):
    """Two rows, the snapshot, then a third row the snapshot does not have."""
    site.sql("CREATE TABLE games (id INT PRIMARY KEY, note VARCHAR(32)) ENGINE=InnoDB; "
             "INSERT INTO games VALUES (1, 'before-1'), (2, 'before-2')")
    r = site.bingo("snapshot")
    assert r.returncode == 0, r.stdout + r.stderr
    data = site.data_volume()["VolumeId"]
    (made,) = site.ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [data]}])["Snapshots"]
    assert made["SnapshotId"] in site.shim.snapshots
    site.sql("INSERT INTO games VALUES (3, 'after')")
    return made["SnapshotId"]


def test_dry_run_changes_nothing(site, snap):
    before = site.data_volume()["VolumeId"]
    r = site.bingo("restore", "--snapshot", snap, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"detach   {before} ({DEVICE}), kept" in r.stdout
    assert not site.restored_volumes(snap) and site.data_volume()["VolumeId"] == before
    assert site.rows() == ["before-1", "before-2", "after"]


def test_refused_while_a_deployment_runs(site, snap):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    site.host.put_file("/var/lib/bingo-host/deploy.json", json.dumps({
        "deployment_id": "d-TESTING01", "status": "in-progress", "event": "AfterInstall",
        "event_status": "ok", "updated_at": now}))
    try:
        r = site.bingo("restore", "--snapshot", snap)
    finally:
        site.host.run(["rm", "-f", "/var/lib/bingo-host/deploy.json"])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "a deployment holds this host: deployment d-TESTING01 is between hooks" in r.stderr
    assert not site.restored_volumes(snap)


def test_restore_brings_back_the_snapshots_rows(site, snap):
    old = site.data_volume()
    r = site.bingo("restore", "--snapshot", snap)
    assert r.returncode == 0, r.stdout + r.stderr
    assert site.rows() == ["before-1", "before-2"]  # 'after' was written after the snapshot
    site.serving()
    new = site.data_volume()
    tags = {t["Key"]: t["Value"] for t in new["Tags"]}
    assert tags["bingo-host:restored-from"] == snap and tags["bingo-host:replaces"] == old["VolumeId"]
    assert new["Encrypted"] and new["VolumeType"] == old["VolumeType"]
    (kept,) = site.ec2.describe_volumes(VolumeIds=[old["VolumeId"]])["Volumes"]
    assert kept["State"] == "available"
    assert {t["Key"]: t["Value"] for t in kept["Tags"]}["bingo-host:replaced-by"] == new["VolumeId"]
    fstab = site.host.read_file("/etc/fstab")
    uuid = site.host.run(["blkid", "-s", "UUID", "-o", "value", site.shim.device(new["VolumeId"])]).stdout.strip()
    assert f"UUID={uuid} /var/lib/mysql" in fstab
    assert site.host.run(["test", "-e", "/var/lib/bingo-host/restore.json"], check=False).returncode == 1
    last = json.loads(site.host.read_file("/var/lib/bingo-host/last-restore.json"))
    assert last["ok"] and last["new_volume"] == new["VolumeId"]


# (what the restore prints as it starts the step, the action whose answer is held back)
KILL_POINTS = [
    ("restore: create", "CreateVolume"),
    ("restore: stop", None),
    ("restore: unmount", None),
    ("restore: detach", "DetachVolume"),
    ("restore: attach", "AttachVolume"),
    ("volume ", None),  # bootstrap's volume step done: mounted, MariaDB not started yet
    ("mariadb ", None),
    ("restore: serving", "CreateTags"),  # the old volume tagged replaced-by: the last call
]


@pytest.mark.parametrize("point, held", KILL_POINTS, ids=[p.split()[-1] for p, _ in KILL_POINTS])
def test_sigkill_at_each_step_then_a_rerun_serves_the_snapshot(site, snap, point, held):
    site.sql("REPLACE INTO games VALUES (3, 'after')")
    made_before = len(site.restored_volumes(snap))
    gate = Gate(held) if held else None
    if gate:
        site.proxy.hooks.append(gate)
    proc = site.host.popen([BIN, "restore", "--snapshot", snap], env=site.env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 300
        while True:
            line = lines.get(timeout=max(1, deadline - time.monotonic()))
            seen.append(line)
            if line.startswith(point):
                break
        if gate:
            assert gate.reached.wait(60), f"{held} never reached EC2"
        proc.kill()  # SIGKILL to the restore and whatever it runs
        proc.wait(60)
    finally:
        if gate:
            gate.open.set()
            site.proxy.hooks.remove(gate)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9, "".join(seen)
    again = site.bingo("restore", "--snapshot", snap)
    assert again.returncode == 0, "".join(seen) + again.stdout + again.stderr
    assert site.rows() == ["before-1", "before-2"]
    site.serving()
    assert len(site.restored_volumes(snap)) == made_before + 1  # one volume, however it died
    vols = site.ec2.describe_volumes()["Volumes"]
    attached = [v for v in vols if v["Attachments"] and v["Attachments"][0]["Device"] == DEVICE]
    assert len(attached) == 1
    links = site.host.run(["ls", "/dev/disk/by-id"]).stdout.split()
    assert len(links) == 1 and links[0] == (BY_ID + attached[0]["VolumeId"].replace("-", "")).rsplit("/", 1)[1]


def test_a_restore_that_fails_puts_the_old_volume_back_serving(site):
    """--force with a snapshot of a blank volume: the new volume carries no filesystem of the
    data volume, so it is not adopted (bootstrap would format it); the old one serves again."""
    site.sql("REPLACE INTO games VALUES (3, 'after')")
    serving = site.data_volume()["VolumeId"]
    blank = site.ec2.create_volume(Size=1, AvailabilityZone=site.instance.region + "a")["VolumeId"]
    empty = site.ec2.create_snapshot(VolumeId=blank)["SnapshotId"]
    r = site.bingo("restore", "--snapshot", empty)
    assert r.returncode == 2 and "--force" in r.stderr, r.stdout + r.stderr
    r = site.bingo("restore", "--snapshot", empty, "--force")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{serving} is attached and serving again" in r.stderr
    assert "not a filesystem labelled" in r.stderr
    assert site.data_volume()["VolumeId"] == serving
    assert site.rows() == ["before-1", "before-2", "after"]
    site.serving()
    (failed,) = site.restored_volumes(empty)
    assert failed["State"] == "available"
    assert "bingo-host:restore-failed" in {t["Key"] for t in failed["Tags"]}
    last = json.loads(site.host.read_file("/var/lib/bingo-host/last-restore.json"))
    assert last["rolled_back"] and not last["ok"]


def test_a_new_instance_adopts_the_released_volume_and_serves_the_same_rows(site, snap, host_pool, pebble,
                                                                           wheel, tmp_path):
    """Runs last: it powers this module's host off. The restores above ran (the module's order):
    the volume serving is a restored one, and the stack's first volume lost its role."""
    tls_env = {**site.env, "REQUESTS_CA_BUNDLE": CA_INSIDE}
    trust_pebble(site.host, pebble)
    site.host.put_file(CONFIG, kept_config(pebble, site.secret), mode=0o600)
    boot = site.host.run([BIN, "bootstrap"], env=tls_env, check=False, timeout=1800)
    assert boot.returncode == 0, boot.stdout + boot.stderr + pebble.logs()
    assert f"HTTPS enabled for {DOMAIN}" in boot.stdout and "kept the certificate" in boot.stdout, boot.stdout
    bundle = Bundles(site.host, wheel, tmp_path).make("kept")
    deployed = site.host.run([BIN, "deploy", bundle, "--deployment-id", "d-KEPT00001"], env=ENV, check=False,
                             timeout=1200)
    assert deployed.returncode == 0 and "kept revision-" in deployed.stdout, deployed.stdout + deployed.stderr
    certificate = served_certificate(pebble)
    status, body = api(site.host, "PUT", "/api/user", {"username": "kept", "password": "pw-kept",
                                                        "email": "kept@example.com"})
    assert status == 200, body
    token = json.loads(body)["access_token"]  # signed with the old host's secret_key

    rows, serving = site.rows(), site.data_volume()
    data = serving["VolumeId"]
    assert {t["Key"]: t["Value"] for t in serving["Tags"]}["bingo-host:restored-from"] == snap
    first = site.ec2.describe_volumes(VolumeIds=[site.instance.data_volume])["Volumes"][0]
    assert "bingo-host:role" not in {t["Key"] for t in first["Tags"]}  # replaced: never attached
    old_key = secret_key(site.host)
    secrets = boto3.client("secretsmanager", region_name=site.instance.region,
                           endpoint_url=site.env["AWS_ENDPOINT_URL_SECRETS_MANAGER"])
    assert old_key == secrets.get_secret_value(SecretId=site.secret)["SecretString"]
    new_id = site.ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "bingo-host:stack", "Value": STACK}]}],
        Placement={"AvailabilityZone": AZ})["Instances"][0]["InstanceId"]
    with pytest.raises(ClientError, match="VolumeInUse"):  # EC2's order: detach first
        site.ec2.attach_volume(VolumeId=data, InstanceId=new_id, Device=DEVICE)
    site.shim.violations.clear()

    dry = site.bingo("release-volume", "--dry-run")
    assert dry.returncode == 0 and data in dry.stdout, dry.stdout + dry.stderr
    assert site.ec2.describe_volumes(VolumeIds=[data])["Volumes"][0]["State"] == "in-use"
    released = site.bingo("release-volume")
    assert released.returncode == 0, released.stdout + released.stderr
    (vol,) = site.ec2.describe_volumes(VolumeIds=[data])["Volumes"]
    assert vol["State"] == "available" and not site.shim.violations
    assert {t["Key"]: t["Value"] for t in vol["Tags"]}["bingo-host:released-from"] == site.instance.instance_id
    assert site.host.run(["systemctl", "is-active", "mariadb"], check=False).stdout.strip() != "active"
    again = site.bingo("release-volume")
    assert again.returncode == 0 and "nothing to release" in again.stdout
    site.host.shutdown()

    new_host = host_pool.fresh()
    try:
        site.shim.move_to(new_host)
        site.imds.instance_id = new_id
        trust_pebble(new_host, pebble)
        new_host.put_file(CONFIG, kept_config(pebble, site.secret), mode=0o600)
        boot = new_host.run([BIN, "bootstrap"], env=tls_env, check=False, timeout=1800)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        assert f"attach {data} (bingo-host:stack={STACK}, in {AZ}) as {DEVICE}" in boot.stdout
        # the release and the certificate the old host kept on the volume, with no one acting
        assert "deployed the revision kept on the data volume (first deployed as d-KEPT00001)" in boot.stdout
        assert "took back the certificate kept on the data volume" in boot.stdout, boot.stdout
        assert served_certificate(pebble) == certificate  # reused, not issued again
        release = new_host.run(["readlink", f"{ROOT}/current"]).stdout.strip().rsplit("/", 1)[-1]
        assert release.startswith("d-") and release != "d-KEPT00001", release
        health = new_host.run(["curl", "-sk", "--resolve", f"{DOMAIN}:443:127.0.0.1",
                               f"https://{DOMAIN}/api/health"], check=False)
        assert health.stdout == "ok\n", health
        status, body = api(new_host, "GET", "/api/user", token=token)  # the old host's token
        assert status == 200 and json.loads(body)["username"] == "kept", (status, body)
        # adopted: never formatted, MariaDB's datadir not initialised again
        assert "create ext4" not in boot.stdout and "initialise" not in boot.stdout, boot.stdout
        instance = type(site.instance)(new_id, site.instance.root_volume, data)
        new_site = Site(new_host, site.proxy, site.imds, site.shim, instance, site.env)
        assert new_site.rows() == rows  # the restored volume's
        new_site.serving()
        assert secret_key(new_host) == old_key  # what the old host signed, the new one accepts
        again = new_host.run([BIN, "bootstrap"], env=tls_env, check=False, timeout=600)
        assert again.returncode == 0 and "attach " not in again.stdout, again.stdout + again.stderr
    finally:
        site.shim.close()  # its loop devices while the new host still has its mounts
        new_host.shutdown()
