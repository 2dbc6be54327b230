"""Consistent EBS snapshots of this instance's volumes, with retention.

For the data volume (the attachment named like ``volume.device``) with a local database::

    one MariaDB session as the backup user
      BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT     (FLUSH TABLES WITH READ LOCK if older)
      sync -f MOUNT; fsfreeze -f MOUNT                  (the data mount only, never /)
      CreateSnapshot                                    (EBS fixes the point in time here)
      fsfreeze -u MOUNT                                 (finally; plus the watchdog process)
      BACKUP STAGE END                                  (finally; closing the session also ends it)

Every other attached volume (the root volume) is snapshotted crash-consistent, never frozen.
In external-database mode every attached volume is crash-consistent. After a run where every
snapshot was created, the newest ``snapshots.keep`` snapshots carrying
``bingo-host:managed=true`` are kept per volume and older ones deleted; a snapshot without
that tag is never deleted. The run's outcome is written atomically to the state file.

Endpoints come only from the standard overrides (``AWS_ENDPOINT_URL_EC2``,
``AWS_ENDPOINT_URL``, ``AWS_EC2_METADATA_SERVICE_ENDPOINT``), which boto3 and
:mod:`bingo_host.facts.imds` honour; the region comes from the instance metadata.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import layout, subp
from .errors import BingoHostError
from .freeze import FREEZE_TIMEOUT, Watchdog, check_freezable, freeze, thaw
from .facts.imds import IMDS, Identity

log = logging.getLogger(__name__)

STATE_FILE = f"{layout.STATE_DIR}/last-snapshot.json"

MANAGED_TAG = "bingo-host:managed"
INSTANCE_TAG = "bingo-host:instance"
VOLUME_TAG = "bingo-host:volume"
DEVICE_TAG = "bingo-host:device"
MOUNTPOINT_TAG = "bingo-host:mountpoint"

# EC2 operations this module calls; tagging on create also needs ec2:CreateTags.
OPERATIONS = ("DescribeVolumes", "DescribeSnapshots", "CreateSnapshot", "DeleteSnapshot")
IMPLIED_ACTIONS = {"CreateSnapshot": ("ec2:CreateTags",)}

DB_LOCK_WAIT_TIMEOUT = 10  # seconds BACKUP STAGE may wait for running DDL / commits
DB_CONNECT_TIMEOUT = 5


class SnapshotError(BingoHostError):
    pass


class Interrupted(SnapshotError):
    pass


class _Terminated(BaseException):
    """Raised by the SIGTERM/SIGHUP handler. A BaseException, like KeyboardInterrupt, so that
    no library's `except Exception` swallows it on the way out through our `finally`s."""


# -- results --

@dataclass
class Made:
    volume_id: str
    device: str
    mountpoint: str
    snapshot_id: str
    consistency: str  # "application" (locked + frozen) or "crash"
    state: str


@dataclass
class RunResult:
    started: str
    finished: str | None = None
    ok: bool = False
    dry_run: bool = False
    instance_id: str | None = None
    region: str | None = None
    snapshots: list[Made] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    freeze_ms: float | None = None  # fsfreeze -f .. fsfreeze -u
    lock_ms: float | None = None  # BLOCK_COMMIT acquired .. BACKUP STAGE END done
    lock_method: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_last(path: str | Path = STATE_FILE) -> dict | None:
    """The last run's result for ``status``; None when there was none (or it is unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _save(result: RunResult, path: str | Path) -> None:
    from .ops.files import write_atomic

    try:
        write_atomic(path, result.to_json(), 0o644)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)


# -- AWS --

def _actions_for(operation: str) -> str:
    actions = [f"ec2:{operation}", *IMPLIED_ACTIONS.get(operation, ())]
    try:
        from .aws_actions import ACTIONS
    except ImportError:  # pragma: no cover - the list lives beside this module
        ACTIONS = tuple(actions)
    missing = [a for a in actions if a not in ACTIONS]
    if missing:  # pragma: no cover - kept in sync by a test
        log.warning("aws_actions.ACTIONS lacks %s", ", ".join(missing))
    return " and ".join(actions)


def _aws_call(client, operation: str, **kwargs):
    """client.<operation>(**kwargs); every failure becomes a SnapshotError saying what to do."""
    from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError,
                                     PartialCredentialsError)

    method = getattr(client, _snake(operation))
    try:
        return method(**kwargs)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise SnapshotError(
            f"no AWS credentials for {operation} ({exc}): attach an instance profile whose role "
            f"allows {_actions_for(operation)}") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, msg = err.get("Code", "?"), err.get("Message", "")
        if code == "DryRunOperation":
            raise
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            raise SnapshotError(
                f"AWS denied {operation} ({code}): the instance role needs "
                f"{_actions_for(operation)}") from None
        if code in ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch"):
            raise SnapshotError(f"AWS rejected the credentials for {operation} ({code}: {msg})") \
                from None
        raise SnapshotError(f"EC2 {operation} failed: {code}: {msg}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise SnapshotError(f"EC2 {operation} failed: {exc}") from None


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def ec2_clients(region: str, session=None):
    """(client for ordinary calls, client for the CreateSnapshot made while frozen).

    Standard retries cover throttling and 5xx. The frozen call gets short timeouts and few
    attempts so that it fails by itself well before the watchdog's deadline.
    """
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()
    normal = session.client("ec2", region_name=region, config=Config(
        connect_timeout=3, read_timeout=15,
        retries={"mode": "standard", "total_max_attempts": 5}))
    frozen = session.client("ec2", region_name=region, config=Config(
        connect_timeout=2, read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 3}))
    return normal, frozen


# -- volumes --

@dataclass(frozen=True)
class Attached:
    volume_id: str
    device: str
    size_gib: int


def device_key(device: str) -> str:
    """/dev/sdf, /dev/xvdf, sdf and xvdf all name the same attachment point: 'sdf'."""
    name = device.removeprefix("/dev/")
    for prefix in ("xvd", "sd"):
        if name.startswith(prefix):
            return "sd" + name[len(prefix):]
    return name


def _nvme_volume_id(device: str) -> str | None:
    """On Nitro instances /dev/nvmeXn1's serial is the volume id without its dash."""
    try:
        name = Path(device).resolve().name
        serial = Path(f"/sys/block/{name}/device/serial").read_text().strip()
    except OSError:
        return None
    if serial.startswith("vol") and not serial.startswith("vol-"):
        return "vol-" + serial[3:]
    return serial if serial.startswith("vol-") else None


def attached_volumes(ec2, instance_id: str) -> list[Attached]:
    resp = _aws_call(ec2, "DescribeVolumes",
                     Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
    found = []
    for vol in resp.get("Volumes", []):
        for att in vol.get("Attachments", []):
            if att.get("InstanceId") == instance_id and att.get("State") in ("attached", None):
                found.append(Attached(vol["VolumeId"], att["Device"], vol.get("Size", 0)))
    return sorted(found, key=lambda a: device_key(a.device))


def find_data_volume(volumes: list[Attached], device: str) -> Attached | None:
    key = device_key(device)
    for vol in volumes:
        if device_key(vol.device) == key:
            return vol
    if device.startswith("/dev/nvme") and (vol_id := _nvme_volume_id(device)):
        return next((v for v in volumes if v.volume_id == vol_id), None)
    return None


def _mountpoint_of(vol: Attached) -> str:
    """Best effort: where this volume (or a partition of it) is mounted locally, or ''."""
    candidates = [f"/dev/{device_key(vol.device)}", "/dev/xvd" + device_key(vol.device)[2:]]
    try:
        for block in Path("/sys/block").iterdir():
            if block.name.startswith("nvme") \
                    and _nvme_volume_id(f"/dev/{block.name}") == vol.volume_id:
                candidates.append(f"/dev/{block.name}")
    except OSError:
        pass
    devs = set()
    for cand in candidates:
        try:
            st = os.stat(cand)
        except OSError:
            continue
        devs.add(st.st_rdev)
    if not devs:
        return ""
    majors = {(os.major(d), os.minor(d)) for d in devs}
    from .facts.blockdev import mounts

    try:
        for mount in mounts():
            major, minor = (int(x) for x in mount.major_minor.split(":"))
            # whole disk or one of its first partitions (minor numbers follow the disk's)
            if any(major == ma and mi <= minor <= mi + 15 for ma, mi in majors):
                return mount.mountpoint
    except (OSError, ValueError):
        pass
    return ""


# -- the database lock --

def read_password(path: str | Path) -> str:
    try:
        pw = Path(path).read_text().strip()
    except OSError as exc:
        raise SnapshotError(
            f"cannot read the backup user's password file {path} ({exc.strerror}): bootstrap "
            f"creates it with the {layout.BACKUP_DB_USER} user") from None
    if not pw:
        raise SnapshotError(f"the backup user's password file {path} is empty")
    return pw


def connect(socket_path: str, password: str):
    import pymysql

    from .facts.mariadb import connect as mariadb_connect

    try:
        return mariadb_connect(socket_path, layout.BACKUP_DB_USER, password, timeout=DB_CONNECT_TIMEOUT,
                               read_timeout=DB_LOCK_WAIT_TIMEOUT + 50)
    except pymysql.err.MySQLError as exc:
        detail = exc.args[-1] if exc.args else exc
        raise SnapshotError(f"cannot connect to MariaDB at {socket_path} as "
                            f"{layout.BACKUP_DB_USER}: {detail}") from None


class DatabaseLock:
    """BACKUP STAGE START + BLOCK_COMMIT in the given session (FTWRL where unsupported).

    Commits (and DDL) by every other session wait until :meth:`release`.
    """

    def __init__(self, conn):
        self.conn = conn
        self.method: str | None = None

    def acquire(self) -> None:
        import pymysql

        cur = self.conn.cursor()
        cur.execute("SET SESSION lock_wait_timeout = %s", (DB_LOCK_WAIT_TIMEOUT,))
        try:
            try:
                cur.execute("BACKUP STAGE START")
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] != 1064:  # ER_PARSE_ERROR: a server before MariaDB 10.4
                    raise
                cur.execute("FLUSH TABLES WITH READ LOCK")
                self.method = "FLUSH TABLES WITH READ LOCK"
                return
            self.method = "BACKUP STAGE"
            try:
                cur.execute("BACKUP STAGE BLOCK_COMMIT")
            except BaseException:
                self.release()
                raise
        except pymysql.err.MySQLError as exc:
            raise SnapshotError(f"could not lock the database for the snapshot: "
                                f"{exc.args[-1] if exc.args else exc}") from None

    def release(self) -> None:
        import pymysql

        if not self.method:
            return
        sql = "BACKUP STAGE END" if self.method == "BACKUP STAGE" else "UNLOCK TABLES"
        self.method = None
        try:
            self.conn.cursor().execute(sql)
        except pymysql.err.MySQLError as exc:
            # Closing the session (which the caller does next) releases the lock too.
            log.warning("%s failed (%s); closing the session releases the lock", sql, exc)
            self.conn.close()


# -- snapshots --

def _tags(cfg, ident: Identity, vol: Attached, mountpoint: str) -> list[dict[str, str]]:
    return [
        {"Key": MANAGED_TAG, "Value": "true"},
        {"Key": INSTANCE_TAG, "Value": ident.instance_id},
        {"Key": VOLUME_TAG, "Value": vol.volume_id},
        {"Key": DEVICE_TAG, "Value": vol.device},
        {"Key": MOUNTPOINT_TAG, "Value": mountpoint},
        {"Key": "Name", "Value": f"{cfg.app.name} {vol.device} {ident.instance_id}"},
    ]


def create_snapshot(ec2, cfg, ident: Identity, vol: Attached, mountpoint: str,
                    consistency: str) -> Made:
    resp = _aws_call(
        ec2, "CreateSnapshot", VolumeId=vol.volume_id,
        Description=f"bingo-host {ident.instance_id} {vol.device} {mountpoint or '-'} "
                    f"({consistency}-consistent)",
        TagSpecifications=[{"ResourceType": "snapshot",
                            "Tags": _tags(cfg, ident, vol, mountpoint)}])
    state = resp.get("State", "pending")
    if state == "error":
        raise SnapshotError(f"EC2 reports snapshot {resp.get('SnapshotId')} of {vol.volume_id} "
                            f"in state error: {resp.get('StateMessage', '')}")
    return Made(vol.volume_id, vol.device, mountpoint, resp["SnapshotId"], consistency, state)


def preflight(ec2, cfg, ident: Identity, vol: Attached, mountpoint: str) -> None:
    """CreateSnapshot with DryRun: checks the permission (ec2:CreateSnapshot and, for the tags,
    ec2:CreateTags) before anything is locked, and opens the connection the frozen call uses."""
    from botocore.exceptions import ClientError

    try:
        _aws_call(ec2, "CreateSnapshot", VolumeId=vol.volume_id, DryRun=True,
                  TagSpecifications=[{"ResourceType": "snapshot",
                                      "Tags": _tags(cfg, ident, vol, mountpoint)}])
    except ClientError as exc:  # only DryRunOperation gets through _aws_call: allowed
        assert exc.response["Error"]["Code"] == "DryRunOperation"


def consistent_snapshot(ec2_frozen, cfg, platform, ident: Identity, vol: Attached,
                        password: str, result: RunResult,
                        freeze_timeout: float = FREEZE_TIMEOUT) -> Made:
    """Lock MariaDB, freeze the data mount, CreateSnapshot, thaw, unlock (see module doc)."""
    mountpoint = cfg.volume.mountpoint
    preflight(ec2_frozen, cfg, ident, vol, mountpoint)
    watchdog = Watchdog(mountpoint, freeze_timeout).start()
    try:
        conn = connect(platform.mariadb_socket, password)
        try:
            # Flush dirty pages before locking, so the sync inside the window is short.
            subp.run(["sync", "-f", mountpoint], timeout=120)
            lock = DatabaseLock(conn)
            lock.acquire()
            t_lock = time.monotonic()
            result.lock_method = lock.method
            try:
                subp.run(["sync", "-f", mountpoint], timeout=60)
                watchdog.arm()
                frozen = False
                try:
                    t_freeze = time.monotonic()
                    freeze(mountpoint)
                    frozen = True
                    return create_snapshot(ec2_frozen, cfg, ident, vol, mountpoint, "application")
                finally:
                    if frozen:
                        thaw(mountpoint)  # on failure the watchdog (still armed) thaws
                        result.freeze_ms = round((time.monotonic() - t_freeze) * 1000, 1)
                        log.info("%s frozen for %.1f ms", mountpoint, result.freeze_ms)
                    watchdog.disarm()
            finally:
                lock.release()
                result.lock_ms = round((time.monotonic() - t_lock) * 1000, 1)
                log.info("database locked (%s) for %.1f ms", result.lock_method, result.lock_ms)
        finally:
            conn.close()
    finally:
        watchdog.stop()


def managed_snapshots(ec2, volume_id: str) -> list[dict]:
    snaps = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"OwnerIds": ["self"], "Filters": [
            {"Name": "volume-id", "Values": [volume_id]},
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]}
        if token:
            kwargs["NextToken"] = token
        resp = _aws_call(ec2, "DescribeSnapshots", **kwargs)
        snaps.extend(resp.get("Snapshots", []))
        token = resp.get("NextToken")
        if not token:
            break
    # Trust the tag itself, not only the server-side filter.
    return [s for s in snaps if _tag_dict(s).get(MANAGED_TAG) == "true"
            and s.get("VolumeId") == volume_id]


def _tag_dict(snap: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in snap.get("Tags", []) or []}


def prune(ec2, volume_ids: list[str], keep: int, *, dry_run: bool = False,
          warnings: list[str] | None = None) -> list[str]:
    """Delete all but the newest `keep` managed snapshots of each volume; return the ids."""
    deleted = []
    for volume_id in volume_ids:
        snaps = sorted(managed_snapshots(ec2, volume_id),
                       key=lambda s: (s["StartTime"], s["SnapshotId"]), reverse=True)
        for snap in snaps[keep:]:
            if not dry_run:
                try:
                    _aws_call(ec2, "DeleteSnapshot", SnapshotId=snap["SnapshotId"])
                except SnapshotError as exc:
                    if "InvalidSnapshot.InUse" in str(exc):  # an AMI still uses it
                        (warnings if warnings is not None else []).append(
                            f"kept {snap['SnapshotId']}: in use ({exc})")
                        continue
                    raise
            deleted.append(snap["SnapshotId"])
    return deleted


@contextmanager
def _run_lock(state_file: Path) -> Iterator[None]:
    """One snapshot run at a time (the timer and a manual run must not freeze twice)."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_file.parent / "snapshot.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SnapshotError("another bingo-host snapshot is running") from None
        yield
    finally:
        os.close(fd)


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind the run, so `finally` thaws and unlocks on `systemctl stop`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in (signal.SIGTERM, signal.SIGHUP):  # one is enough: let the cleanup finish
            signal.signal(s, signal.SIG_IGN)
        raise _Terminated(f"interrupted by {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def take_snapshots(cfg, platform, *, dry_run: bool = False, state_file: str | Path = STATE_FILE,
                   password_file: str | Path = layout.BACKUP_PASSWORD_FILE,
                   freeze_timeout: float = FREEZE_TIMEOUT, session=None, imds: IMDS | None = None,
                   echo: Callable[[str], None] = log.info) -> RunResult:
    """Snapshot every volume attached to this instance, then apply retention.

    The database socket is ``platform.mariadb_socket``; the data mount is
    ``cfg.volume.mountpoint``. Raises SnapshotError (a BingoHostError) on any failure, with the
    database unlocked and the filesystem thawed; the outcome is saved to state_file either way
    (not in dry-run).
    """
    state_file = Path(state_file)
    result = RunResult(started=_now(), dry_run=dry_run)
    with _run_lock(state_file), _terminate_as_exception():
        try:
            _take(cfg, platform, result, dry_run=dry_run, password_file=password_file,
                  freeze_timeout=freeze_timeout, session=session, imds=imds, echo=echo)
            result.ok = True
        except BingoHostError as exc:
            result.error = str(exc)
            raise
        except _Terminated as exc:
            result.error = str(exc)
            raise Interrupted(str(exc)) from None
        except KeyboardInterrupt:
            result.error = "interrupted"
            raise
        finally:
            result.finished = _now()
            if not dry_run:
                _save(result, state_file)
    return result


def _take(cfg, platform, result: RunResult, *, dry_run, password_file, freeze_timeout,
          session, imds, echo) -> None:
    ident = (imds or IMDS()).identity()
    result.instance_id, result.region = ident.instance_id, ident.region
    ec2, ec2_frozen = ec2_clients(ident.region, session)
    volumes = attached_volumes(ec2, ident.instance_id)
    if not volumes:
        raise SnapshotError(f"EC2 lists no volumes attached to {ident.instance_id}")
    data = None
    if cfg.database.local:
        data = find_data_volume(volumes, cfg.volume.device)
        if data is None:
            raise SnapshotError(
                f"no volume is attached to {ident.instance_id} as {cfg.volume.device} "
                f"(volume.device); attached: "
                + ", ".join(f"{v.volume_id} at {v.device}" for v in volumes))
        check_freezable(cfg.volume.mountpoint)
    others = [v for v in volumes if v != data]
    verb = "would snapshot" if dry_run else "snapshot"
    if data:
        echo(f"{verb} {data.volume_id} ({data.device}, {cfg.volume.mountpoint}): "
             f"application-consistent (MariaDB locked, {cfg.volume.mountpoint} frozen)")
    for vol in others:
        echo(f"{verb} {vol.volume_id} ({vol.device}): crash-consistent")

    if dry_run:
        if data:
            read_password(password_file)
            connect(platform.mariadb_socket, read_password(password_file)).close()
        for vol in volumes:
            preflight(ec2, cfg, ident, vol, cfg.volume.mountpoint if vol == data else "")
        for snap_id in prune(ec2, [v.volume_id for v in volumes], cfg.snapshots.keep,
                             dry_run=True):
            echo(f"would delete {snap_id} (keep {cfg.snapshots.keep} per volume)")
        return

    if data:
        password = read_password(password_file)
        result.snapshots.append(consistent_snapshot(ec2_frozen, cfg, platform, ident, data,
                                                    password, result, freeze_timeout))
        echo(f"{result.snapshots[-1].snapshot_id}: {data.volume_id} ({data.device}), "
             f"lock {result.lock_ms} ms ({result.lock_method}), freeze {result.freeze_ms} ms")
    for vol in others:
        made = create_snapshot(ec2, cfg, ident, vol, _mountpoint_of(vol), "crash")
        result.snapshots.append(made)
        echo(f"{made.snapshot_id}: {vol.volume_id} ({vol.device}), crash-consistent")
    result.deleted = prune(ec2, [v.volume_id for v in volumes], cfg.snapshots.keep,
                           warnings=result.warnings)
    for snap_id in result.deleted:
        echo(f"deleted {snap_id} (keep {cfg.snapshots.keep} per volume)")
    for warning in result.warnings:
        echo(f"warning: {warning}")


# -- listing --

def list_snapshots(cfg=None, *, session=None, imds: IMDS | None = None) -> list[dict]:
    """Snapshots of the volumes attached to this instance, newest first per volume."""
    ident = (imds or IMDS()).identity()
    ec2, _ = ec2_clients(ident.region, session)
    volumes = attached_volumes(ec2, ident.instance_id)
    devices = {v.volume_id: v.device for v in volumes}
    rows = []
    if volumes:
        resp = _aws_call(ec2, "DescribeSnapshots", OwnerIds=["self"], Filters=[
            {"Name": "volume-id", "Values": list(devices)}])
        for snap in resp.get("Snapshots", []):
            tags = _tag_dict(snap)
            rows.append({
                "snapshot": snap["SnapshotId"], "volume": snap["VolumeId"],
                "device": devices.get(snap["VolumeId"], tags.get(DEVICE_TAG, "")),
                "time": snap["StartTime"].astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                "state": snap.get("State", ""), "progress": snap.get("Progress", ""),
                "size": f"{snap.get('VolumeSize', '?')} GiB",
                "managed": "yes" if tags.get(MANAGED_TAG) == "true" else "no",
            })
    rows.sort(key=lambda r: r["time"], reverse=True)
    rows.sort(key=lambda r: r["device"])  # stable: newest first within each device
    return rows


def format_table(rows: list[dict]) -> str:
    headers = ["SNAPSHOT", "VOLUME", "DEVICE", "STARTED (UTC)", "STATE", "SIZE", "MANAGED"]
    keys = ["snapshot", "volume", "device", "time", "state", "size", "managed"]
    table = [headers] + [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in table)
