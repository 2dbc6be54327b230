"""One `bingo-host restore --snapshot` run: refusals, the plan, forward, or back on failure.

The steps in order: plan; resuming a killed run: the package docstring.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import ExitStack, contextmanager

from .. import restore_record
from ..deploy import record as deploy_record
from ..errors import ConfigError
from ..facts import platforms
from ..facts.imds import IMDS, Identity
from ..ops.lock import host_lock, snapshot_lock
from ..snapshot.ec2 import attached_volumes, clients, find_data_volume
from . import Refused, RestoreError, ebs, host

LOCK_WAIT = 600.0

log = logging.getLogger(__name__)


@contextmanager
def holding_the_data_volume(cfg, command: str, *, dry_run: bool, session, imds):
    """(platform, identity, ec2 client) for a command that takes the data volume away: refused
    on an external database or mid-deployment; the host and snapshot locks held (not for a dry
    run) so no bootstrap, deploy or snapshot runs meanwhile."""
    if not cfg.database.local:
        raise ConfigError("database.host", f"this host uses an external database: it has no data "
                                           f"volume for {command}")
    platform = platforms.get(cfg.platform)
    ident = (imds or IMDS()).identity()
    ec2, _ = clients(ident.region, session)
    with ExitStack() as locks:
        if not dry_run:
            locks.enter_context(host_lock(LOCK_WAIT))
            locks.enter_context(snapshot_lock(LOCK_WAIT))
        why = deploy_record.blocker(deploy_record.load(), f"({command})")
        if why:
            raise Refused(f"a deployment holds this host: {why}; run {command} once it is over")
        yield platform, ident, ec2


def restore_snapshot(cfg, snapshot_id: str, *, force: bool = False, dry_run: bool = False,
                     session=None, imds: IMDS | None = None) -> None:
    """Put snapshot_id in place of the data volume and check the host serves from it; on any
    failure put the old volume back and raise RestoreError. Refused (exit 2) before any change:
    an external database, a deployment under way, a snapshot not of this host's data volume
    (unless force), an availability zone that differs, another restore unfinished."""
    with holding_the_data_volume(cfg, "restore", dry_run=dry_run, session=session,
                                 imds=imds) as (platform, ident, ec2):
        rec = restore_record.load()
        if rec is None:
            rec, snap = _start(ec2, cfg, ident, snapshot_id, force)
        else:
            snap = _resume(ec2, rec, ident, snapshot_id)
        for line in plan(cfg, platform, rec, snap, ident):
            log.info(line)
        if dry_run:
            log.info("restore (dry run): nothing was changed")
            return
        restore_record.save(rec)
        if rec["direction"] == "back":
            _back(ec2, cfg, platform, ident, rec)
            restore_record.finish(rec, False, rec.get("error"))
            raise RestoreError(f"the restore of {snapshot_id} had failed ({rec.get('error')}); "
                               f"{rec['old_volume']} is attached and serving again. Run the "
                               f"command again to retry")
        try:
            _forward(ec2, cfg, platform, ident, rec, snap)
        except (Exception, KeyboardInterrupt) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rec.update(direction="back", error=reason)
            restore_record.save(rec)
            log.error(f"restore: FAILED: {reason}; putting {rec['old_volume']} back")
            try:
                _back(ec2, cfg, platform, ident, rec)
            except Exception as again:
                raise RestoreError(
                    f"restore of {snapshot_id} failed ({reason}) and putting {rec['old_volume']} "
                    f"back failed too ({again}); run `bingo-host restore --snapshot {snapshot_id}` "
                    f"again to finish putting it back") from None
            restore_record.finish(rec, False, reason)
            new = rec.get("new_volume")
            raise RestoreError(
                f"restore of {snapshot_id} failed: {reason}; {rec['old_volume']} is attached and "
                f"serving again" + (f" ({new} is detached, tagged {ebs.FAILED}; delete it when "
                                    f"you no longer need it)" if new else "")) from None
        restore_record.finish(rec, True)
        log.info(f"restore: {snapshot_id} restored: {rec['new_volume']} serves as {rec['device']}; "
                 f"{rec['old_volume']} is detached and kept (tagged {ebs.REPLACED_BY})")


# -- before anything changes --

def _start(ec2, cfg, ident: Identity, snapshot_id: str, force: bool) -> tuple[dict, dict]:
    snap = ebs.snapshot(ec2, snapshot_id)
    if snap is None:
        raise Refused(f"--snapshot {snapshot_id}: no such snapshot in {ident.region}")
    if snap.get("State") != "completed":
        raise Refused(f"--snapshot {snapshot_id} is {snap.get('State')} "
                      f"({snap.get('Progress') or '?'}); restore it once it is completed")
    volumes = attached_volumes(ec2, ident.instance_id)
    data = find_data_volume(volumes, cfg.volume.device)
    if data is None:
        raise Refused(f"volume.device {cfg.volume.device}: no volume is attached to "
                      f"{ident.instance_id} as the data volume; nothing to restore onto")
    old = ebs.volume(ec2, data.volume_id)
    zone = ident.availability_zone
    if not zone or old.get("AvailabilityZone") != zone:
        raise Refused(f"the data volume {data.volume_id} is in {old.get('AvailabilityZone')}, but "
                      f"the instance metadata says this instance is in {zone}; refusing to "
                      f"create a volume that could not be attached back")
    mine = ebs.lineage(old)
    if snap.get("VolumeId") not in mine and not force:
        raise Refused(f"--snapshot {snapshot_id} is a snapshot of {snap.get('VolumeId')}, not of "
                      f"this host's data volume ({', '.join(mine)}); --force restores it anyway")
    rec = {"schema": 1, "snapshot_id": snapshot_id, "instance_id": ident.instance_id,
           "device": data.device, "old_volume": data.volume_id, "new_volume": None,
           "token": secrets.token_hex(8), "direction": "forward", "error": None,
           "started_at": restore_record.now()}
    return rec, snap


def _resume(ec2, rec: dict, ident: Identity, snapshot_id: str) -> dict:
    if rec["snapshot_id"] != snapshot_id:
        raise Refused(f"--snapshot {snapshot_id}: the restore of {rec['snapshot_id']} is "
                      f"unfinished ({restore_record.RECORD_FILE}); run `bingo-host restore --snapshot "
                      f"{rec['snapshot_id']}` to finish it first")
    if rec.get("instance_id") != ident.instance_id:
        raise Refused(f"{restore_record.RECORD_FILE} is a restore on {rec.get('instance_id')}, not this "
                      f"instance ({ident.instance_id}); remove it if that instance is gone")
    snap = ebs.snapshot(ec2, snapshot_id)
    if snap is None:
        raise RestoreError(f"--snapshot {snapshot_id} no longer exists")
    return snap


def plan(cfg, platform, rec: dict, snap: dict, ident: Identity) -> list[str]:
    old, dev, mp = rec["old_volume"], rec["device"], cfg.volume.mountpoint
    new = rec.get("new_volume") or "the new volume"
    head = (f"restore {snap['SnapshotId']} (of {snap.get('VolumeId')}, "
            f"{snap.get('StartTime', '?')}) onto {ident.instance_id} in {ident.availability_zone}")
    if rec["direction"] == "back":
        return [f"{head}: it failed ({rec.get('error')}); finishing putting {old} back",
                f"  detach   {new}, tagged {ebs.FAILED}, without {ebs.ROLE_TAG}",
                f"  attach   {old} as {dev}",
                "  adopt    bootstrap", "  check    services, database login, HTTP through nginx"]
    return [
        head + ("" if not rec.get("new_volume") else f" (resuming: {new} exists)"),
        f"  create   a volume from {snap['SnapshotId']} in {ident.availability_zone}, like {old}, "
        f"encrypted, tagged {ebs.RESTORED_FROM}",
        f"  stop     {' and '.join(host.units(platform))}; unmount {mp}",
        f"  detach   {old} ({dev}), kept",
        f"  attach   {new} as {dev}",
        f"  adopt    bootstrap: fstab follows its filesystem's UUID, mount {mp}, start everything",
        "  check    services, database login, HTTP through nginx",
        f"  tag      {old} {ebs.REPLACED_BY}={new}, without {ebs.ROLE_TAG} (a replacement "
        f"instance attaches {new})",
    ]


# -- forward and back: each step looks before it acts --

def _forward(ec2, cfg, platform, ident: Identity, rec: dict, snap: dict) -> None:
    inst, dev = ident.instance_id, rec["device"]
    new_id = _new_volume(ec2, rec, snap, ident)
    old = ebs.volume(ec2, rec["old_volume"])
    if ebs.attachment(old, inst):
        host.quiesce(cfg, platform)
        log.info(f"restore: detach {old['VolumeId']} ({dev})")
        ebs.detach(ec2, old["VolumeId"], inst, dev)
    ebs.wait_for(ec2, rec["old_volume"], lambda v: not ebs.attachment(v, inst), "detached")
    _attach(ec2, cfg, ident, new_id, dev)
    host.adopt(cfg)
    host.check_health(cfg, platform)
    old = ebs.volume(ec2, rec["old_volume"])
    if old is not None and ebs.tag_dict(old).get(ebs.REPLACED_BY) != new_id:
        ebs.tag(ec2, rec["old_volume"], ebs.REPLACED_BY, new_id)
    if old is not None:
        ebs.drop_role(ec2, old)


def _new_volume(ec2, rec: dict, snap: dict, ident: Identity) -> str:
    """The volume of this restore: recorded, found by its token (the answer to CreateVolume
    may have been lost with the process), or created now; once it exists in EC2."""
    if not rec.get("new_volume"):
        found = ebs.by_token(ec2, rec["token"])
        if found is None:
            old = ebs.volume(ec2, rec["old_volume"])
            if old is None:
                raise RestoreError(f"the data volume {rec['old_volume']} no longer exists")
            log.info(f"restore: create a volume from {snap['SnapshotId']} in {ident.availability_zone}")
            rec["new_volume"] = ebs.create_volume(ec2, snap, old, ident.availability_zone,
                                                  rec["token"])
        else:
            rec["new_volume"] = found["VolumeId"]
        restore_record.save(rec)
    ebs.wait_for(ec2, rec["new_volume"], lambda v: v.get("State") in ("available", "in-use"),
                 "available")
    return rec["new_volume"]


def _attach(ec2, cfg, ident: Identity, volume_id: str, dev: str) -> None:
    inst = ident.instance_id
    vol = ebs.volume(ec2, volume_id)
    if vol is None:
        raise RestoreError(f"{volume_id} no longer exists")
    if not ebs.attachment(vol, inst):
        log.info(f"restore: attach {volume_id} as {dev}")
        ebs.attach(ec2, volume_id, inst, dev)
    ebs.wait_for(ec2, volume_id, lambda v: (ebs.attachment(v, inst) or {}).get("State") == "attached",
                 "attached")
    node = host.wait_device(volume_id, dev)
    host.check_configured(cfg, volume_id, node)
    host.check_adoptable(cfg, volume_id, node)


def _back(ec2, cfg, platform, ident: Identity, rec: dict) -> None:
    inst, dev = ident.instance_id, rec["device"]
    new_id = rec.get("new_volume") or (ebs.by_token(ec2, rec["token"]) or {}).get("VolumeId")
    new = ebs.volume(ec2, new_id) if new_id else None
    if new is not None:
        rec["new_volume"] = new_id
        if ebs.attachment(new, inst):
            host.quiesce(cfg, platform)
            log.info(f"restore: detach {new_id} ({dev})")
            ebs.detach(ec2, new_id, inst, dev)
        if not ebs.tag_dict(new).get(ebs.FAILED):
            ebs.tag(ec2, new_id, ebs.FAILED, rec.get("error") or "restore failed")
        ebs.drop_role(ec2, new)
        ebs.wait_for(ec2, new_id, lambda v: not ebs.attachment(v, inst), "detached")
    _attach(ec2, cfg, ident, rec["old_volume"], dev)
    host.adopt(cfg)
    host.check_health(cfg, platform)
