"""bingo-host snapshot against real parts: moto_server (through a loopback proxy), an IMDSv2
test server, and a real MariaDB whose datadir is on a real ext4 loop volume that really gets
frozen. Nothing is mocked inside bingo_host; nothing is sent beyond 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bingo_host.facts import platforms
from bingo_host.facts.ebs import ebs_name
from bingo_host.snapshot import SnapshotError, ec2 as snap_ec2, run as snap_run
from bingo_host.config_file import load_config_text
from bingo_host.errors import BingoHostError
from bingo_host.ops.lock import snapshot_lock
from bingo_host.snapshot.freeze import FreezeError, check_freezable
pytest.register_assert_rewrite("tests.aws_servers")
from tests.aws_servers import free_port  # noqa: E402


REPO = Path(__file__).resolve().parent.parent


# -- helpers --

def make_config(db, *, local=True, keep=3, volumes="data", stack="auto"):
    host = "localhost" if local else "db.internal.example.com"
    return load_config_text(f"""
platform: debian12
database: {{host: {host}}}
volume: {{device: /dev/sdf, mountpoint: {db.mountpoint}}}
snapshots: {{keep: {keep}, volumes: {volumes}, stack: {stack}}}
""")


def make_platform(db):
    return dataclasses.replace(platforms.PLATFORMS["debian12"], mariadb_socket=db.socket)


def write_config(tmp_path, db, **kwargs) -> Path:
    local = kwargs.get("local", True)
    path = tmp_path / "config.yaml"
    path.write_text(f"""
platform: debian12
database: {{host: {"localhost" if local else "db.internal.example.com"}}}
volume: {{device: /dev/sdf, mountpoint: {db.mountpoint}}}
snapshots: {{keep: {kwargs.get("keep", 3)}, volumes: {kwargs.get("volumes", "data")}}}
""")
    return path


def cli(tmp_path, db, *args, config=None):
    """argv for the real CLI in a subprocess."""
    config = config or write_config(tmp_path, db)
    return [sys.executable, "-m", "bingo_host", "--config", str(config), "snapshot",
            "--socket", db.socket, "--state-file", str(tmp_path / "last-snapshot.json"),
            "--password-file", str(db.password_file), *args]


def run_cli(tmp_path, db, *args, timeout=120, config=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(cli(tmp_path, db, *args, config=config), capture_output=True,
                          text=True, timeout=timeout, env=env)


class Probe(threading.Thread):
    """Runs fn in a thread and records when it finished (or its exception)."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.done_at, self.error = fn, None, None

    def run(self):
        try:
            self.fn()
        except Exception as exc:  # reported by the test
            self.error = exc
        self.done_at = time.time()


def file_write(path: Path):
    def write():
        with open(path, "w") as f:
            f.write(f"{time.time()}\n")
            f.flush()
            os.fsync(f.fileno())
    return write


def db_insert(db, note: str):
    def insert():
        conn = db.admin()
        try:
            conn.cursor().execute("INSERT INTO writes (note, at) VALUES (%s, %s)",
                                  (note, time.time()))
        finally:
            conn.close()
    return insert


def assert_writable_and_unlocked(db, tmp_path, within: float = 5.0):
    """The data mount accepts writes and MariaDB commits, both within `within` seconds."""
    w = Probe(file_write(db.mountpoint / "probe.txt"))
    i = Probe(db_insert(db, "after"))
    w.start()
    i.start()
    w.join(within)
    i.join(within)
    assert w.done_at and not w.error, "data mount still frozen"
    assert i.done_at and not i.error, f"database still locked ({i.error})"
    # and `fsfreeze -u` says it is not frozen
    thaw = subprocess.run(["fsfreeze", "--unfreeze", str(db.mountpoint)], capture_output=True)
    assert thaw.returncode == 1


def snapshots_of(inst, volume_id):
    ec2 = inst.client()
    return ec2.describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "volume-id", "Values": [volume_id]}])["Snapshots"]


@pytest.fixture
def db(loop_mariadb):
    yield loop_mariadb
    loop_mariadb.thaw()  # never leave it frozen for the next test, whatever happened


# -- the consistent path --

def test_write_blocks_until_create_snapshot_and_mount_is_frozen_not_root(
        db, ec2_instance, ec2_proxy, tmp_path):
    import boto3

    session = boto3.session.Session()
    seen = {}

    def before_create(params, **kwargs):
        if params["body"].get("DryRun"):
            return
        seen.setdefault("volumes", []).append(params["body"].get("VolumeId"))
        if "t_request" in seen:
            return  # the root volume's, after the unlock
        seen["t_request"] = time.time()
        # Issued now, during the snapshot: a commit and a write to the data mount.
        seen["insert"] = Probe(db_insert(db, "during"))
        seen["write"] = Probe(file_write(db.mountpoint / "during.txt"))
        seen["insert"].start()
        seen["write"].start()
        # / is never frozen: a write there completes at once.
        root_write = Probe(file_write(tmp_path / "root-probe.txt"))
        root_write.start()
        root_write.join(5)
        seen["root_ok"] = (root_write.done_at is not None
                           and os.stat(tmp_path).st_dev == os.stat("/").st_dev)
        seen["insert"].join(0.7)
        seen["write"].join(0.3)
        seen["insert_blocked"] = seen["insert"].done_at is None
        seen["write_blocked"] = seen["write"].done_at is None

    def after_create(parsed, **kwargs):
        if parsed.get("VolumeId") == ec2_instance.data_volume and parsed.get("SnapshotId"):
            seen["t_returned"] = time.time()

    session.events.register("before-call.ec2.CreateSnapshot", before_create)
    session.events.register("after-call.ec2.CreateSnapshot", after_create)
    state = tmp_path / "state" / "last-snapshot.json"
    result = snap_run.take_snapshots(make_config(db, volumes="all"), make_platform(db),
                                     state_file=state,
                                     password_file=db.password_file, session=session)

    seen["insert"].join(10)
    seen["write"].join(10)
    assert seen["root_ok"]
    assert seen["insert"].error is None and seen["write"].error is None
    assert seen["insert_blocked"], "a commit went through while the backup lock was held"
    assert seen["write_blocked"], "the data mount was not frozen during CreateSnapshot"
    assert seen["insert"].error is None and seen["write"].error is None
    # ordering: the commit and the write landed only after CreateSnapshot had returned
    assert seen["insert"].done_at > seen["t_returned"] > seen["t_request"]
    assert seen["write"].done_at > seen["t_returned"]
    conn = db.admin()
    with conn.cursor() as cur:
        cur.execute("SELECT at FROM writes WHERE note='during' ORDER BY id DESC LIMIT 1")
        (committed_at,) = cur.fetchone()
    conn.close()
    assert committed_at > seen["t_request"] - 1
    # moto saw exactly one CreateSnapshot per volume, the data volume first
    creates = [t for t, action in ec2_proxy.calls if action == "CreateSnapshot"]
    assert [a for _, a in ec2_proxy.calls if a.startswith("CreateSnapshot")][0] \
        == "CreateSnapshot?DryRun"  # permission checked before anything was locked
    assert len(creates) == 2 and creates[0] <= seen["t_returned"]
    assert seen["volumes"] == [ec2_instance.data_volume, ec2_instance.root_volume]

    assert result.ok and result.lock_method == "BACKUP STAGE"
    assert result.freeze_ms is not None and result.lock_ms >= result.freeze_ms > 0
    by_volume = {m.volume_id: m for m in result.snapshots}
    assert by_volume[ec2_instance.data_volume].consistency == "application"
    assert by_volume[ec2_instance.root_volume].consistency == "crash"
    data_snap = snapshots_of(ec2_instance, ec2_instance.data_volume)
    assert len(data_snap) == 1
    tags = {t["Key"]: t["Value"] for t in data_snap[0]["Tags"]}
    assert tags == {  # no stack made this instance: its own id is the stack's identity
        "bingo-host:stack": ec2_instance.instance_id,
        "bingo-host:instance": ec2_instance.instance_id,
        "bingo-host:volume": ec2_instance.data_volume, "bingo-host:device": "/dev/sdf",
        "bingo-host:mountpoint": str(db.mountpoint),
        "Name": f"music-bingo /dev/sdf {ec2_instance.instance_id}"}
    saved = json.loads(state.read_text())
    assert saved["ok"] and saved["error"] is None and saved["freeze_ms"] == result.freeze_ms
    assert {s["snapshot_id"] for s in saved["snapshots"]} \
        == {m.snapshot_id for m in result.snapshots}
    assert_writable_and_unlocked(db, tmp_path)


def test_cli_run_and_list(db, ec2_instance, tmp_path):
    proc = run_cli(tmp_path, db)
    assert proc.returncode == 0, proc.stderr
    assert "application-consistent" in proc.stdout and "1 snapshot(s) created" in proc.stdout
    state = json.loads((tmp_path / "last-snapshot.json").read_text())
    assert state["ok"] and len(state["snapshots"]) == 1 and state["lock_ms"] < 5000
    # snapshots.volumes defaults to data: the root volume (bootstrap rebuilds it) is left alone
    assert state["snapshots"][0]["volume_id"] == ec2_instance.data_volume
    assert snapshots_of(ec2_instance, ec2_instance.root_volume) == []
    assert state["stack"] == ec2_instance.instance_id

    listing = run_cli(tmp_path, db, "--list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["SNAPSHOT", "VOLUME", "DEVICE", "STARTED", "(UTC)", "STATE",
                                "SIZE", "STACK"]
    for made in state["snapshots"]:
        assert any(line.startswith(made["snapshot_id"]) and
                   line.endswith(ec2_instance.instance_id) for line in lines[1:])
    col = lines[0].index("VOLUME")
    assert all(line[col:col + 4] == "vol-" for line in lines[1:])  # aligned columns
    assert_writable_and_unlocked(db, tmp_path)


def test_dry_run_changes_nothing(db, ec2_instance, tmp_path):
    proc = run_cli(tmp_path, db, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would snapshot" in proc.stdout
    assert snapshots_of(ec2_instance, ec2_instance.data_volume) == []
    assert not (tmp_path / "last-snapshot.json").exists()


# -- retention and external-database mode --

def test_retention_keeps_n_and_never_touches_foreign_snapshots(db, ec2_instance, tmp_path):
    """The instance carries the aws:cloudformation:stack-name tag CloudFormation puts on the
    instances it makes: that names the stack, and retention touches only that stack's
    snapshots (not a hand-made one, another stack's, nor the managed=true ones older versions
    tagged, which the stack's IAM policy no longer lets it delete)."""
    ec2 = ec2_instance.client()
    ec2.create_tags(Resources=[ec2_instance.instance_id],
                    Tags=[{"Key": "aws:cloudformation:stack-name", "Value": "bingo-prod"}])
    foreign = [ec2.create_snapshot(VolumeId=ec2_instance.data_volume, Description="manual")]
    for key, value in (("bingo-host:stack", "bingo-staging"), ("bingo-host:managed", "true")):
        foreign.append(ec2.create_snapshot(
            VolumeId=ec2_instance.data_volume, TagSpecifications=[{
                "ResourceType": "snapshot", "Tags": [{"Key": key, "Value": value}]}]))
    # external database: no lock, no freeze, no data volume: volumes: all
    cfg = make_config(db, local=False, keep=2, volumes="all")
    runs = []
    for i in range(4):
        if i:
            time.sleep(1.1)  # moto's StartTime has 1 s resolution
        runs.append(snap_run.take_snapshots(cfg, make_platform(db),
                                            state_file=tmp_path / "state.json"))
    last = runs[-1]
    assert last.stack == "bingo-prod"
    assert last.lock_ms is None and last.freeze_ms is None
    assert {m.consistency for m in last.snapshots} == {"crash"}
    assert len(runs[2].deleted) == 2 and len(runs[3].deleted) == 2  # one per volume each time
    for volume in (ec2_instance.data_volume, ec2_instance.root_volume):
        ours = [s["SnapshotId"] for s in snapshots_of(ec2_instance, volume)
                if {"Key": "bingo-host:stack", "Value": "bingo-prod"} in s.get("Tags", [])]
        newest = {m.snapshot_id for r in runs[-2:] for m in r.snapshots if m.volume_id == volume}
        assert set(ours) == newest
    remaining = {s["SnapshotId"] for s in snapshots_of(ec2_instance, ec2_instance.data_volume)}
    assert {f["SnapshotId"] for f in foreign} <= remaining


def test_configured_stack_names_the_snapshots(db, ec2_instance, tmp_path):
    result = snap_run.take_snapshots(make_config(db, stack="bingo-handmade"), make_platform(db),
                                     state_file=tmp_path / "s.json",
                                     password_file=db.password_file)
    (snap,) = snapshots_of(ec2_instance, ec2_instance.data_volume)
    assert {"Key": "bingo-host:stack", "Value": "bingo-handmade"} in snap["Tags"]
    assert result.stack == "bingo-handmade"


def test_external_database_has_no_data_volume_to_snapshot(db, ec2_instance, tmp_path):
    with pytest.raises(SnapshotError, match="snapshots.volumes is data, but the database is "
                                            "external"):
        snap_run.take_snapshots(make_config(db, local=False), make_platform(db),
                                state_file=tmp_path / "s.json")
    assert snapshots_of(ec2_instance, ec2_instance.root_volume) == []
    assert snapshots_of(ec2_instance, ec2_instance.data_volume) == []


# -- one volume's failure --

def test_a_denied_volume_does_not_stop_the_others_retention(db, ec2_instance, ec2_proxy,
                                                            tmp_path):
    """The issue's case: volumes: all under a role that may snapshot only the data volume. The
    root volume's CreateSnapshot is denied; the data volume is still snapshotted and pruned,
    and the run then fails (exit 1) naming the root volume."""
    config = write_config(tmp_path, db, keep=1, volumes="all")
    first = run_cli(tmp_path, db, config=config)
    assert first.returncode == 0, first.stderr
    old = {v: [s["SnapshotId"] for s in snapshots_of(ec2_instance, v)]
           for v in (ec2_instance.data_volume, ec2_instance.root_volume)}
    time.sleep(1.1)
    ec2_proxy.fail[f"CreateSnapshot:{ec2_instance.root_volume}"] = (403, "UnauthorizedOperation")
    proc = run_cli(tmp_path, db, config=config)
    assert proc.returncode == 1
    assert f"{ec2_instance.root_volume} (/dev/sda1): AWS denied CreateSnapshot" in proc.stderr
    data_now = [s["SnapshotId"] for s in snapshots_of(ec2_instance, ec2_instance.data_volume)]
    assert len(data_now) == 1 and data_now != old[ec2_instance.data_volume]  # new one, old pruned
    assert [s["SnapshotId"] for s in snapshots_of(ec2_instance, ec2_instance.root_volume)] \
        == old[ec2_instance.root_volume]  # no new snapshot: its last one is kept
    saved = json.loads((tmp_path / "last-snapshot.json").read_text())
    assert not saved["ok"] and "AWS denied CreateSnapshot" in saved["error"]
    assert [s["snapshot_id"] for s in saved["snapshots"]] == data_now
    assert saved["deleted"] == old[ec2_instance.data_volume]
    assert_writable_and_unlocked(db, tmp_path)


def test_a_volume_gone_between_describe_and_snapshot(db, ec2_instance, tmp_path):
    """The root volume is detached and deleted after DescribeVolumes listed it: EC2 answers
    its CreateSnapshot with InvalidVolume.NotFound; the data volume's snapshot and retention
    still happen."""
    import boto3

    ec2 = ec2_instance.client()
    old = ec2.create_snapshot(VolumeId=ec2_instance.data_volume, TagSpecifications=[{
        "ResourceType": "snapshot",
        "Tags": [{"Key": "bingo-host:stack", "Value": ec2_instance.instance_id}]}])["SnapshotId"]
    time.sleep(1.1)
    session = boto3.session.Session()

    def vanish(params, **kwargs):
        if params["body"].get("VolumeId") == ec2_instance.root_volume:
            ec2.detach_volume(VolumeId=ec2_instance.root_volume,
                              InstanceId=ec2_instance.instance_id)
            ec2.delete_volume(VolumeId=ec2_instance.root_volume)

    session.events.register("before-call.ec2.CreateSnapshot", vanish)
    with pytest.raises(SnapshotError) as exc:
        snap_run.take_snapshots(make_config(db, local=False, keep=1, volumes="all"),
                                make_platform(db), state_file=tmp_path / "s.json",
                                session=session)
    assert "InvalidVolume.NotFound" in str(exc.value)
    assert ec2_instance.root_volume in str(exc.value)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [s["volume_id"] for s in saved["snapshots"]] == [ec2_instance.data_volume]
    assert saved["deleted"] == [old]
    remaining = [s["SnapshotId"] for s in snapshots_of(ec2_instance, ec2_instance.data_volume)]
    assert remaining == [saved["snapshots"][0]["snapshot_id"]]


def test_data_volume_found_by_xvd_alias(db, ec2_instance, tmp_path):
    ec2 = ec2_instance.client()
    ec2.detach_volume(VolumeId=ec2_instance.data_volume, InstanceId=ec2_instance.instance_id)
    ec2.attach_volume(VolumeId=ec2_instance.data_volume, InstanceId=ec2_instance.instance_id,
                      Device="/dev/xvdf")
    result = snap_run.take_snapshots(make_config(db), make_platform(db),
                                     state_file=tmp_path / "s.json", password_file=db.password_file)
    data = [m for m in result.snapshots if m.volume_id == ec2_instance.data_volume]
    assert data and data[0].consistency == "application"


# -- the watchdog --

def _wait_for(event, timeout, what):
    assert event.wait(timeout), f"timed out waiting for {what}"


def _start_cli_stalled(tmp_path, db, ec2_proxy, *args):
    ec2_proxy.stall["CreateSnapshot"] = 60
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cli(tmp_path, db, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(ec2_proxy.event("CreateSnapshot"), 30, "CreateSnapshot at the EC2 endpoint")
    # now locked and frozen: prove it
    insert = Probe(db_insert(db, "while-stalled"))
    write = Probe(file_write(db.mountpoint / "while-stalled.txt"))
    insert.start()
    write.start()
    insert.join(0.5)
    write.join(0.3)
    assert insert.done_at is None and write.done_at is None, "not locked+frozen during the stall"
    return proc, insert, write


def _watchdogs(mountpoint) -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "bingo_host.snapshot.freeze" in cmd and str(mountpoint) in cmd:
            found.append(p)
    return found


def test_sigkill_while_frozen_thaws_and_unlocks(db, ec2_instance, ec2_proxy, tmp_path):
    proc, insert, write = _start_cli_stalled(tmp_path, db, ec2_proxy)
    t_kill = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)  # no finally runs
    proc.wait(10)
    write.join(30)
    insert.join(30)
    elapsed = time.monotonic() - t_kill
    assert write.done_at and insert.done_at and not insert.error, "still frozen or locked"
    assert elapsed < 30
    print(f"thawed and unlocked {elapsed * 1000:.0f} ms after SIGKILL")
    assert_writable_and_unlocked(db, tmp_path)
    deadline = time.monotonic() + 10
    while _watchdogs(db.mountpoint) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _watchdogs(db.mountpoint), "the watchdog did not exit"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_while_frozen_unwinds_cleanly(db, ec2_instance, ec2_proxy, tmp_path, sig):
    """systemctl stop sends SIGTERM, a terminal SIGINT or SIGHUP: the run itself thaws and
    unlocks, and exits 1."""
    proc, insert, write = _start_cli_stalled(tmp_path, db, ec2_proxy)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and f"interrupted by {sig.name}" in stderr, stderr
    write.join(10)
    insert.join(10)
    assert write.done_at and insert.done_at and time.monotonic() - t0 < 10
    saved = json.loads((tmp_path / "last-snapshot.json").read_text())
    assert saved["error"] == f"interrupted by {sig.name}" and saved["freeze_ms"] is not None
    assert_writable_and_unlocked(db, tmp_path)


def test_hung_process_is_killed_by_watchdog(db, ec2_instance, ec2_proxy, tmp_path):
    proc, insert, write = _start_cli_stalled(tmp_path, db, ec2_proxy, "--freeze-timeout", "2")
    os.kill(proc.pid, signal.SIGSTOP)  # hung for good: only the watchdog can help
    t0 = time.monotonic()
    try:
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL
    write.join(30)
    insert.join(30)
    assert write.done_at and insert.done_at and not insert.error
    assert time.monotonic() - t0 < 30
    assert_writable_and_unlocked(db, tmp_path)


# -- interrupted while the freeze itself is under way, or before it --

FIFREEZE = 0xC0045877
SPLICE_SYSCALL = {"x86_64": 275, "aarch64": 76}


def _syscall(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return []


class WriteInProgress:
    """A splice from an empty pipe into a file on the mount. The kernel counts it as a write in
    progress until it returns, and a freeze waits for writes in progress: the freeze hangs in
    the kernel, as it would behind a slow flush, until release()."""

    CODE = ("import os, sys\nr, w = os.pipe()\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\nos.splice(r, fd, 1)\n")

    def __init__(self, path: Path):
        import platform

        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, str(path)])
        nr = str(SPLICE_SYSCALL[platform.machine()])
        deadline = time.monotonic() + 10
        while _syscall(self.proc.pid)[:1] != [nr]:
            assert time.monotonic() < deadline and self.proc.poll() is None, "no splice"
            time.sleep(0.02)

    def release(self) -> None:
        self.proc.kill()  # the splice returns, the write ends, the freeze goes on
        self.proc.wait()


def _wait_in_freeze(pid: int, timeout: float = 30) -> None:
    """Until the run (or a child of it) waits inside the FIFREEZE ioctl."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pids = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in pids:
            call = _syscall(p)
            if len(call) > 2 and call[0] != "running" and int(call[2], 16) == FIFREEZE:
                return
        time.sleep(0.02)
    raise AssertionError("the run never waited in the freeze")


def _start_cli(tmp_path, db, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(cli(tmp_path, db, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _assert_no_watchdog(db):
    deadline = time.monotonic() + 10
    while _watchdogs(db.mountpoint) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _watchdogs(db.mountpoint), "the watchdog did not exit"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signal_while_the_freeze_is_under_way(db, ec2_instance, tmp_path, sig):
    """The signal lands while the freeze waits in the kernel; the freeze completes after it.
    Whoever is left (the run, or the watchdog once the run is gone) must thaw after that."""
    held = WriteInProgress(db.mountpoint / "held.txt")
    proc = _start_cli(tmp_path, db)
    try:
        _wait_in_freeze(proc.pid)
        proc.send_signal(sig)
        time.sleep(1)  # everyone reacts to the signal while the freeze still waits
    finally:
        held.release()
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 1 and f"interrupted by {sig.name}" in stderr, stderr
    assert_writable_and_unlocked(db, tmp_path, within=10)
    _assert_no_watchdog(db)


def test_freeze_stuck_past_the_watchdog_timeout(db, ec2_instance, tmp_path):
    """A freeze that hangs longer than the watchdog allows (what `fsfreeze -f` timing out
    was): the watchdog kills the run, and thaws once the freeze is over, not before."""
    held = WriteInProgress(db.mountpoint / "held.txt")
    proc = _start_cli(tmp_path, db, "--freeze-timeout", "1")
    try:
        _wait_in_freeze(proc.pid)
        time.sleep(3)  # the watchdog gave up on the run meanwhile
    finally:
        held.release()
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert_writable_and_unlocked(db, tmp_path, within=10)
    _assert_no_watchdog(db)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signal_while_waiting_for_the_database_lock(db, ec2_instance, tmp_path, sig):
    """Before anything is frozen: the run waits for BACKUP STAGE START behind another backup."""
    other = db.admin()
    other.cursor().execute("BACKUP STAGE START")
    proc = _start_cli(tmp_path, db)
    try:
        deadline = time.monotonic() + 30
        while True:
            with other.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                            "WHERE USER = 'bingobackup' AND INFO = 'BACKUP STAGE START'")
                if cur.fetchone()[0]:
                    break
            assert time.monotonic() < deadline, "the run never waited for the backup lock"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        other.cursor().execute("BACKUP STAGE END")
        other.close()
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 1), stderr
    assert_writable_and_unlocked(db, tmp_path)
    _assert_no_watchdog(db)


# -- failures: clear message, non-zero exit, nothing frozen or locked --

def test_imds_down(db, ec2_instance, imds_server, tmp_path):
    imds_server.down = True
    proc = run_cli(tmp_path, db)
    assert proc.returncode == 1
    assert "cannot reach the EC2 instance metadata service" in proc.stderr
    assert json.loads((tmp_path / "last-snapshot.json").read_text())["error"]
    assert_writable_and_unlocked(db, tmp_path)


def test_ec2_endpoint_down(db, ec2_instance, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{free_port()}")
    proc = run_cli(tmp_path, db)
    assert proc.returncode == 1
    assert "DescribeVolumes failed" in proc.stderr and "127.0.0.1" in proc.stderr
    assert_writable_and_unlocked(db, tmp_path)


@pytest.mark.parametrize("action,status,code,expect", [
    ("CreateSnapshot", 500, "InternalError", "EC2 CreateSnapshot failed: InternalError"),
    ("CreateSnapshot", 403, "UnauthorizedOperation",
     "AWS denied CreateSnapshot (UnauthorizedOperation): the instance role needs "
     "ec2:CreateSnapshot and ec2:CreateTags"),
    ("DescribeVolumes", 403, "UnauthorizedOperation", "needs ec2:DescribeVolumes"),
    ("CreateSnapshot", 503, "RequestLimitExceeded", "RequestLimitExceeded"),
    ("CreateSnapshot?DryRun", 403, "UnauthorizedOperation", "needs ec2:CreateSnapshot and "
                                                            "ec2:CreateTags"),
])
def test_ec2_errors(db, ec2_instance, ec2_proxy, tmp_path, action, status, code, expect):
    ec2_proxy.fail[action] = (status, code)
    with pytest.raises(SnapshotError) as exc:
        snap_run.take_snapshots(make_config(db), make_platform(db), state_file=tmp_path / "s.json",
                                password_file=db.password_file)
    assert expect in str(exc.value)
    tries = sum(1 for _, a in ec2_proxy.calls if a == action)
    assert tries == (1 if status == 403 else 3)  # throttling and 5xx retried, denial not
    if action == "CreateSnapshot?DryRun":  # refused before anything was locked or frozen
        assert not any(a == "CreateSnapshot" for _, a in ec2_proxy.calls)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert not saved["ok"] and expect in saved["error"]
    assert_writable_and_unlocked(db, tmp_path)


def test_cli_exit_status_on_denied(db, ec2_instance, ec2_proxy, tmp_path):
    ec2_proxy.fail["DeleteSnapshot"] = (403, "UnauthorizedOperation")
    assert run_cli(tmp_path, db, config=write_config(tmp_path, db, keep=1)).returncode == 0
    time.sleep(1.1)
    proc = run_cli(tmp_path, db, config=write_config(tmp_path, db, keep=1))
    assert proc.returncode == 1
    assert f"retention of {ec2_instance.data_volume}: AWS denied DeleteSnapshot" in proc.stderr
    assert "ec2:DeleteSnapshot" in proc.stderr
    assert_writable_and_unlocked(db, tmp_path)


def test_missing_credentials(db, ec2_instance, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    proc = run_cli(tmp_path, db)
    assert proc.returncode == 1
    assert "no AWS credentials" in proc.stderr and "ec2:DescribeVolumes" in proc.stderr


def test_wrong_backup_password_fails_cleanly(db, ec2_instance, tmp_path):
    bad = tmp_path / "pw"
    bad.write_text("not-the-password\n")
    with pytest.raises(SnapshotError, match="cannot connect to MariaDB"):
        snap_run.take_snapshots(make_config(db), make_platform(db), state_file=tmp_path / "s.json",
                                password_file=bad)
    assert_writable_and_unlocked(db, tmp_path)
    assert snapshots_of(ec2_instance, ec2_instance.data_volume) == []


def test_data_volume_not_attached(db, ec2_instance, tmp_path):
    ec2_instance.client().detach_volume(VolumeId=ec2_instance.data_volume,
                                        InstanceId=ec2_instance.instance_id)
    with pytest.raises(SnapshotError, match="no volume is attached .* as /dev/sdf"):
        snap_run.take_snapshots(make_config(db), make_platform(db), state_file=tmp_path / "s.json",
                                password_file=db.password_file)


def test_second_run_refused_while_one_holds_the_lock(tmp_path):
    cfg = load_config_text("platform: debian12\nvolume: {device: /dev/sdf, mountpoint: /srv/db}\n")
    with snapshot_lock():
        with pytest.raises(BingoHostError, match="a bingo-host snapshot .* holds"):
            snap_run.take_snapshots(cfg, platforms.PLATFORMS["debian12"],
                                    state_file=tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


# -- small pieces --

def test_device_aliases():
    assert ebs_name("/dev/sdf") == ebs_name("/dev/xvdf") == "sdf"
    assert ebs_name("/dev/xvda1") == ebs_name("/dev/sda1") == "sda1"
    vols = [snap_ec2.Attached("vol-1", "/dev/xvda", 8), snap_ec2.Attached("vol-2", "/dev/xvdf", 2)]
    assert snap_ec2.find_data_volume(vols, "/dev/sdf").volume_id == "vol-2"
    assert snap_ec2.find_data_volume(vols, "/dev/sdg") is None


def test_data_volume_is_the_one_mounted_where_the_host_can_tell(tmp_path):
    """On Nitro the disk under volume.mountpoint names its EBS volume in its NVMe serial
    (sysfs): that volume is the data volume, whatever it was attached as."""
    from bingo_host.facts.mounts import Mount, mounted_volume_id

    sys_root = tmp_path / "sys"
    ctrl = sys_root / "devices" / "pci0000:00" / "nvme" / "nvme1"
    disk = ctrl / "nvme1n1"
    (disk / "nvme1n1p1").mkdir(parents=True)
    (disk / "nvme1n1p1" / "partition").write_text("1\n")
    (ctrl / "serial").write_text("vol0abc123  \n")
    (disk / "device").symlink_to(ctrl)
    (sys_root / "dev" / "block").mkdir(parents=True)
    (sys_root / "dev" / "block" / "259:1").symlink_to(disk / "nvme1n1p1")
    (sys_root / "dev" / "block" / "259:0").symlink_to(disk)
    table = [Mount("259:1", "/", "/var/lib/mysql", "ext4", "fake-source"),
             Mount("7:0", "/", "/srv/loop", "ext4", "fake-loop")]
    assert mounted_volume_id("/var/lib/mysql", table, str(sys_root)) == "vol-0abc123"
    table[0] = Mount("259:0", "/", "/var/lib/mysql", "ext4", "fake-source")  # a whole disk
    assert mounted_volume_id("/var/lib/mysql", table, str(sys_root)) == "vol-0abc123"
    assert mounted_volume_id("/srv/loop", table, str(sys_root)) is None  # not EBS: cannot tell
    assert mounted_volume_id("/nowhere", table, str(sys_root)) is None

    vols = [snap_ec2.Attached("vol-0root", "/dev/xvda", 8),
            snap_ec2.Attached("vol-0abc123", "/dev/sdg", 2)]
    assert snap_ec2.find_data_volume(vols, "/dev/sdf", "vol-0abc123").volume_id == "vol-0abc123"
    assert snap_ec2.find_data_volume(vols, "/dev/sdf", "vol-0other") is None


def test_refuses_to_freeze_root(tmp_path):
    with pytest.raises(FreezeError, match="refusing to freeze /|not a mount point"):
        check_freezable("/")
    with pytest.raises(FreezeError, match="not a mount point"):
        check_freezable(str(tmp_path))
