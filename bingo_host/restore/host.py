"""The host side of a restore: quiesce the data volume, find the attached one, adopt, check.

The new volume is found by its volume id (udev's by-id link or the NVMe serial, as on any
Nitro instance), and adopted only when volume.device resolves to that same node, so
bootstrap (and every later boot) mounts the restored volume and no other.
"""

from __future__ import annotations

import logging
import os
import time

from .. import layout, state, subp
from ..context import make_context
from ..converge import bootstrap, engine
from ..converge.steps import volume
from ..facts import ebs, mounts, signatures
from ..facts.systemd import states
from ..ops.service import systemctl
from ..status import checks, database
from ..status.report import Report
from . import RestoreError

DEVICE_WAIT = 120.0
HEALTH_WAIT = 90.0
SERVING = ("services.nginx", "services.mariadb", "services.uwsgi", "database", "http.static",
           "http.health", "http.redirect")

log = logging.getLogger(__name__)


def units(platform) -> list[str]:
    """What uses the data volume, in the order it is stopped: the app, then its database."""
    return [f"{layout.UWSGI_SERVICE}.service", f"{platform.mariadb_service}.service"]


def quiesce(cfg, platform) -> None:
    """Stop uWSGI and MariaDB and unmount the data mount (each only if still needed)."""
    for unit, st in states(*units(platform)).items():
        if st.active not in ("inactive", "failed", ""):
            log.info(f"restore: stop {unit}")
            systemctl("stop", unit, timeout=300)
    mp = cfg.volume.mountpoint
    if mounts.mounted_at(mp):
        log.info(f"restore: unmount {mp}")
        subp.run(["umount", mp], timeout=120)


def wait_device(volume_id: str, device: str, timeout: float = DEVICE_WAIT) -> str:
    """The /dev node of the attached volume_id. On Xen (no EBS NVMe devices at all, no ids)
    the attachment's sdX/xvdX name, which only this volume can hold now."""
    deadline = time.monotonic() + timeout
    while True:
        node = ebs.volume_device(volume_id)
        if node is None and not ebs.ebs_nvme_devices():
            node = next((os.path.realpath(p) for p in ebs.aliases("/dev/" + ebs.ebs_name(device))
                         if os.path.exists(p)), None)
        if node:
            return node
        if time.monotonic() >= deadline:
            raise RestoreError(f"{volume_id} is attached as {device} but no block device "
                               f"for it appeared here within {timeout:.0f} s")
        time.sleep(1)


def check_configured(cfg, volume_id: str, node: str, timeout: float = DEVICE_WAIT) -> None:
    """volume.device must lead to node (udev moves /dev/sdf-style links after an attach)."""
    deadline = time.monotonic() + timeout
    while True:
        found = ebs.find_device(cfg.volume.device)
        if found == node:
            return
        if time.monotonic() >= deadline:
            raise RestoreError(f"volume.device {cfg.volume.device} resolves to {found or 'nothing'}, "
                               f"not to {node} where {volume_id} is attached; bootstrap would not "
                               f"mount it")
        time.sleep(1)


def check_adoptable(cfg, volume_id: str, node: str) -> None:
    """The volume must carry the data volume's filesystem (volume.label): bootstrap formats a
    blank volume, and a restore must never end as an empty database."""

    found = signatures.read_signature(node)
    lvs = signatures.lvs() if found.get("TYPE") == "LVM2_member" else []
    d = volume.decide(node, found, lvs, cfg.volume.filesystem, cfg.volume.label)
    if d.action not in ("adopt", "lvm"):
        raise RestoreError(f"{volume_id} holds {volume.describe_probe(found)}, not a filesystem "
                           f"labelled {cfg.volume.label}: it is no copy of the data volume")


def adopt(cfg) -> None:
    """Bootstrap's steps (the caller holds the host lock): the volume step adopts the volume
    by its label, points the fstab line at its filesystem's UUID and mounts it; MariaDB and
    uWSGI start on it."""
    ctx = make_context(cfg)
    failed = [r for r in engine.run_steps(ctx, bootstrap.STEPS) if r.status == "failed"]
    if failed:
        raise RestoreError(f"bootstrap failed at step {failed[0].name}: {failed[0].detail}")


def check_health(cfg, platform, timeout: float = HEALTH_WAIT) -> None:
    """The checks of `status` that say the site serves from this database: nginx, MariaDB and
    uWSGI running, the app's database login, the index and health check through nginx."""

    deadline = time.monotonic() + timeout
    while True:
        tls_domain = state.tls_domain(cfg)
        r = Report()
        checks.check_services(r, cfg, platform, bool(tls_domain))
        database.check_database(r, cfg, platform)
        checks.check_release(r, cfg)
        checks.check_http(r, cfg, tls_domain)
        wrong = [p["message"] for p in r.problems if p["check"] in SERVING and p["severity"] == "error"]
        if not wrong:
            log.info("restore: serving: services running, database login ok, HTTP through nginx ok")
            return
        if time.monotonic() >= deadline:
            raise RestoreError("health check failed: " + "; ".join(wrong))
        time.sleep(2)
