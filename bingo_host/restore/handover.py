"""`bingo-host release-volume`: hand the data volume over to a replacement instance.

An instance is replaced (a new AMI) while its data volume lives on; EC2 attaches a volume to
one instance at a time, so the old instance lets go first: uWSGI and MariaDB stop, the mount
goes, the volume is tagged released-from and detached, and only once EC2 reports it available
may the new instance attach it (as the same device), where bootstrap adopts it by its label.
"""

from __future__ import annotations

import logging

from .. import restore_record
from ..context import make_context
from ..facts.imds import IMDS
from ..snapshot.ec2 import attached_volumes, find_data_volume
from . import Refused, ebs, host
from .run import holding_the_data_volume

log = logging.getLogger(__name__)


def release_volume(cfg, *, dry_run: bool = False, session=None, imds: IMDS | None = None) -> str | None:
    """Detach the data volume from this instance, its users stopped first; the volume id, or
    None when none is attached (released already)."""
    with holding_the_data_volume(cfg, "release-volume", dry_run=dry_run,
                                 session=session, imds=imds) as (platform, ident, ec2):
        if restore_record.load():
            raise Refused(f"a restore is unfinished ({restore_record.RECORD_FILE}): finish it first")
        data = find_data_volume(attached_volumes(ec2, ident.instance_id), cfg.volume.device)
        if data is None:
            log.info(f"release-volume: no volume is attached to {ident.instance_id} as "
                     f"{cfg.volume.device}: nothing to release")
            return None
        vol, inst, dev = data.volume_id, ident.instance_id, data.device
        ctx = make_context(cfg, dry_run=dry_run)
        ctx.change(f"stop {' and '.join(host.units(platform))}, unmount {cfg.volume.mountpoint}",
                   lambda: host.quiesce(cfg, platform))
        ctx.change(f"tag {vol} {ebs.RELEASED_FROM}={inst}",
                   lambda: ebs.tag(ec2, vol, ebs.RELEASED_FROM, inst))
        ctx.change(f"detach {vol} ({dev}) from {inst}", lambda: ebs.detach(ec2, vol, inst, dev))
        ctx.change(f"wait until EC2 reports {vol} available",
                   lambda: ebs.wait_for(ec2, vol, lambda v: v.get("State") == "available",
                                        "available"))
        if dry_run:
            log.info("release-volume (dry run): nothing was changed")
            return vol
    log.info(f"release-volume: {data.volume_id} is available: attach it to the new instance as "
             f"{data.device}; its bootstrap adopts it")
    return data.volume_id
