"""One snapshot run, start to end: under the snapshot lock, the attached volumes and this host's
stack tag from EC2; the data volume application-consistent (consistent_snapshot), with
snapshots.volumes: all every other volume crash-consistent; then retention for each volume that
got a new snapshot. One volume's failure skips neither the others nor their retention: the run
fails at the end, naming each failure.

Whatever happens (an EC2 error, a lost database, SIGTERM from `systemctl stop`, SIGINT from a
terminal, SIGHUP), the run unwinds through `finally`: the mount is thawed and the database
unlocked before it returns or raises, and the outcome is written to the state file that
`status` reads.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

from .. import layout, state, subp
from ..errors import BingoHostError
from ..facts import platforms
from ..facts.mounts import attachment_mountpoint, mounted_volume_id
from ..facts.imds import IMDS, Identity
from ..ops.cleanup import Stopped
from ..ops.lock import snapshot_lock
from . import SnapshotError
from .dblock import DatabaseLock, connect, read_password
from .ec2 import (Attached, Made, attached_volumes, clients, create_snapshot, find_data_volume,
                  preflight, stack_identity)
from .freeze import FREEZE_TIMEOUT, AlreadyFrozen, Watchdog, check_freezable, freeze, thaw
from .retention import prune

log = logging.getLogger(__name__)


class Interrupted(SnapshotError):
    pass


class _Terminated(BaseException):
    """Raised by the SIGTERM/SIGINT/SIGHUP handler. A BaseException, so that no library's
    `except Exception` swallows it on the way out through our `finally`s; not a
    KeyboardInterrupt, which subprocess answers by not waiting for the child it started."""


@dataclass
class RunResult:
    started: str
    finished: str | None = None
    ok: bool = False
    dry_run: bool = False
    instance_id: str | None = None
    region: str | None = None
    stack: str | None = None  # the bingo-host:stack tag of its snapshots
    snapshots: list[Made] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    freeze_ms: float | None = None  # fsfreeze -f .. fsfreeze -u
    lock_ms: float | None = None  # BLOCK_COMMIT acquired .. BACKUP STAGE END done
    lock_method: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """SIGTERM/SIGINT/SIGHUP unwind the run, so `finally` thaws and unlocks on `systemctl stop`
    or Ctrl-C; later ones are ignored, so they cannot cut that cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in _SIGNALS:  # one is enough: let the cleanup finish
            signal.signal(s, signal.SIG_IGN)
        raise _Terminated(f"interrupted by {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def scheduled(cfg, *, dry_run: bool = False, socket_path: str | None = None,
              state_file: str | None = None, password_file: str | None = None,
              freeze_timeout: float = FREEZE_TIMEOUT) -> RunResult | None:
    """What `bingo-host snapshot` runs: take_snapshots with the config's platform (its MariaDB
    socket replaced by socket_path); None, and nothing done, when snapshots.enabled is false
    (a dry run shows its plan all the same)."""
    if not cfg.snapshots.enabled and not dry_run:
        return None
    platform = platforms.get(cfg.platform)
    if socket_path:
        platform = replace(platform, mariadb_socket=socket_path)
    return take_snapshots(cfg, platform, dry_run=dry_run, state_file=state_file or state.SNAPSHOT_FILE,
                          password_file=password_file or layout.BACKUP_PASSWORD_FILE,
                          freeze_timeout=freeze_timeout)


def take_snapshots(cfg, platform, *, dry_run: bool = False,
                   state_file: str | Path = state.SNAPSHOT_FILE,
                   password_file: str | Path = layout.BACKUP_PASSWORD_FILE,
                   freeze_timeout: float = FREEZE_TIMEOUT, session=None, imds: IMDS | None = None) -> RunResult:
    """Snapshot the data volume (snapshots.volumes: all: every attached volume), then apply
    retention to each volume that got a new snapshot.

    The database socket is ``platform.mariadb_socket``; the data mount is
    ``cfg.volume.mountpoint``. Raises BingoHostError (SnapshotError from the run itself) on any
    failure, with the database unlocked and the filesystem thawed; the outcome is saved to
    state_file either way (not in dry-run). A second run while one holds the snapshot lock
    fails at once.
    """
    state_file = Path(state_file)
    result = RunResult(started=_now(), dry_run=dry_run)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with snapshot_lock(), _terminate_as_exception():
        try:
            _take(cfg, platform, result, dry_run=dry_run, password_file=password_file,
                  freeze_timeout=freeze_timeout, session=session, imds=imds)
            result.ok = True
        except BingoHostError as exc:
            result.error = str(exc)
            raise
        except _Terminated as exc:
            result.error = str(exc)
            raise Interrupted(str(exc)) from None
        except Stopped as exc:  # while a Cleanup held the signal (dblock.DatabaseLock.acquire)
            result.error = f"interrupted by {signal.Signals(exc.signum).name}"
            raise Interrupted(result.error) from None
        finally:
            result.finished = _now()
            if not dry_run:
                try:
                    state.write_json(str(state_file), asdict(result))
                except OSError as exc:
                    log.warning("could not write %s: %s", state_file, exc)
    return result


def _take(cfg, platform, result: RunResult, *, dry_run, password_file, freeze_timeout,
          session, imds) -> None:
    ident = (imds or IMDS()).identity()
    result.instance_id, result.region = ident.instance_id, ident.region
    ec2, ec2_frozen = clients(ident.region, session)
    volumes = attached_volumes(ec2, ident.instance_id)
    if not volumes:
        raise SnapshotError(f"EC2 lists no volumes attached to {ident.instance_id}")
    stack = result.stack = stack_identity(ec2, ident.instance_id, cfg.snapshots.stack)
    data = _data_volume(cfg, ident, volumes, result.warnings)
    chosen = [data] if data else []
    if cfg.snapshots.volumes == "all":
        chosen += [v for v in volumes if v != data]
    if not chosen:
        raise SnapshotError("snapshots.volumes is data, but the database is external "
                            "(database.host): there is no data volume. Set snapshots.enabled: "
                            "false, or snapshots.volumes: all to snapshot the instance's volumes")
    verb = "would snapshot" if dry_run else "snapshot"
    for vol in chosen:
        log.info(f"{verb} {vol.volume_id} ({vol.device}" + (
                f", {cfg.volume.mountpoint}): application-consistent (MariaDB locked, "
                f"{cfg.volume.mountpoint} frozen)" if vol == data else "): crash-consistent"))
    keep = cfg.snapshots.keep

    if dry_run:
        if data:
            connect(platform.mariadb_socket, read_password(password_file)).close()
        for vol in chosen:
            preflight(ec2, cfg.app.name, ident, stack, vol,
                      cfg.volume.mountpoint if vol == data else "")
            for snap_id in prune(ec2, vol.volume_id, stack, keep, dry_run=True):
                log.info(f"would delete {snap_id} (keep {keep} of {vol.volume_id})")
        return

    # One volume's failure (a denied CreateSnapshot, a volume gone) does not stop the others, nor
    # their retention; the run fails at the end, naming each failure.
    failures, snapshotted = [], []
    for vol in chosen:
        try:
            if vol == data:
                check_freezable(cfg.volume.mountpoint)
                made = consistent_snapshot(ec2_frozen, cfg, platform, ident, stack, vol,
                                           read_password(password_file), result, freeze_timeout)
                detail = (f"lock {result.lock_ms} ms ({result.lock_method}), "
                          f"freeze {result.freeze_ms} ms")
            else:
                made = create_snapshot(ec2, cfg.app.name, ident, stack, vol,
                                       attachment_mountpoint(vol.device, vol.volume_id), "crash")
                detail = "crash-consistent"
        except BingoHostError as exc:
            failures.append(f"{vol.volume_id} ({vol.device}): {exc}")
            log.info(f"FAILED {vol.volume_id} ({vol.device}): {exc}")
            continue
        result.snapshots.append(made)
        snapshotted.append(vol)
        log.info(f"{made.snapshot_id}: {vol.volume_id} ({vol.device}), {detail}")
    for vol in snapshotted:  # a volume without a new snapshot keeps all it has
        try:
            deleted = prune(ec2, vol.volume_id, stack, keep, warnings=result.warnings)
        except BingoHostError as exc:
            failures.append(f"retention of {vol.volume_id}: {exc}")
            log.info(f"FAILED retention of {vol.volume_id}: {exc}")
            continue
        result.deleted += deleted
        for snap_id in deleted:
            log.info(f"deleted {snap_id} (keep {keep} of {vol.volume_id})")
    for warning in result.warnings:
        log.warning("%s", warning)
    if failures:
        raise SnapshotError(f"{len(failures)} failure(s), {len(result.snapshots)} of "
                            f"{len(chosen)} volume(s) snapshotted: " + "; ".join(failures))


def _data_volume(cfg, ident: Identity, volumes: list[Attached],
                 warnings: list[str]) -> Attached | None:
    """The data volume (a local database only: an external one has none): the EBS volume
    mounted at volume.mountpoint where the host can tell (Nitro), else the one attached as
    volume.device."""
    if not cfg.database.local:
        return None
    mounted = mounted_volume_id(cfg.volume.mountpoint)
    data = find_data_volume(volumes, cfg.volume.device, mounted)
    attached = ", ".join(f"{v.volume_id} at {v.device}" for v in volumes)
    if data is None and mounted:
        raise SnapshotError(f"{cfg.volume.mountpoint} is on {mounted}, which EC2 does not list "
                            f"as attached to {ident.instance_id}; attached: {attached}")
    if data is None:
        raise SnapshotError(f"no volume is attached to {ident.instance_id} as {cfg.volume.device} "
                            f"(volume.device); attached: {attached}")
    named = find_data_volume(volumes, cfg.volume.device)
    if named and named != data:
        warnings.append(f"volume.device {cfg.volume.device} is {named.volume_id}, but "
                        f"{cfg.volume.mountpoint} is on {data.volume_id}: snapshotting "
                        f"{data.volume_id}")
    return data


def consistent_snapshot(ec2_frozen, cfg, platform, ident: Identity, stack: str, vol: Attached,
                        password: str, result: RunResult,
                        freeze_timeout: float = FREEZE_TIMEOUT) -> Made:
    """CreateSnapshot's permission (DryRun) before any lock, the watchdog started, MariaDB
    locked (dblock.py), sync, the data mount frozen (never /), CreateSnapshot (EBS fixes the
    point in time here), then thaw and unlock in `finally`; the lock and freeze times go into
    result."""
    mountpoint = cfg.volume.mountpoint
    preflight(ec2_frozen, cfg.app.name, ident, stack, vol, mountpoint)
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
                maybe_frozen = True  # from here on, whatever interrupts us: thaw
                try:
                    t_freeze = time.monotonic()
                    try:
                        freeze(mountpoint)
                    except AlreadyFrozen:
                        maybe_frozen = False  # someone else's freeze: not ours to thaw
                        raise
                    return create_snapshot(ec2_frozen, cfg.app.name, ident, stack, vol,
                                           mountpoint, "application")
                finally:
                    if maybe_frozen:
                        # If this raises (a second failure, a signal), the watchdog stays
                        # armed and thaws when stop() closes its pipe.
                        if thaw(mountpoint, missing_ok=True):
                            result.freeze_ms = round((time.monotonic() - t_freeze) * 1000, 1)
                            log.info("%s frozen for %.1f ms", mountpoint, result.freeze_ms)
                    watchdog.disarm()  # only once thawed
            finally:
                lock.release()
                result.lock_ms = round((time.monotonic() - t_lock) * 1000, 1)
                log.info("database locked (%s) for %.1f ms", result.lock_method, result.lock_ms)
        finally:
            conn.close()
    finally:
        watchdog.stop()
