"""Small JSON state files under /var/lib/bingo-host: where they are, and reading them safely.

    https.json          what `enable-https` set up: {"domain", "email", "server", "issued_at"}
    last-snapshot.json  the last `bingo-host snapshot` run (written by snapshot/run.py)
    last-backup.json    the last `bingo-host backup` run (written by backup/run.py)
    last-restore-drill.json   the last restore drill: the dump, its counts, ok or why not
    deploy.json         the deployment in progress or the last one (written by deploy/)
    mkfs-in-progress    the device, filesystem and UUID of a mkfs under way (the volume step)
    sizing.json         the memory and CPUs the last converged bootstrap sized for (sizing_record.py)
"""

from __future__ import annotations

import json
import os
from typing import Any

from . import layout
from .name_fields import domain_name
from .ops.files import write_atomic

HTTPS_FILE = f"{layout.STATE_DIR}/https.json"
SNAPSHOT_FILE = f"{layout.STATE_DIR}/last-snapshot.json"
DEPLOY_FILE = f"{layout.STATE_DIR}/deploy.json"
BACKUP_FILE = f"{layout.STATE_DIR}/last-backup.json"
DRILL_FILE = f"{layout.STATE_DIR}/last-restore-drill.json"
PATCH_FILE = f"{layout.STATE_DIR}/last-patch.json"
MKFS_FILE = f"{layout.STATE_DIR}/mkfs-in-progress"  # a mkfs under way (the volume step)
SIZING_FILE = f"{layout.STATE_DIR}/sizing.json"
LETSENCRYPT_LIVE = "/etc/letsencrypt/live"


def read_json(path: str) -> dict[str, Any] | None:
    """The file's JSON object; None when it is missing, unreadable, not JSON or not an object."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str, data: dict[str, Any], owner: str | None = None, group: str | None = None,
               mode: int = 0o644) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode, owner, group)


def cert_path(domain: str, name: str = "fullchain.pem") -> str:
    return f"{LETSENCRYPT_LIVE}/{domain}/{name}"


def https_domain(cfg, path: str = HTTPS_FILE) -> str | None:
    """The domain HTTPS is for: `https.domain` in the config, else the one enable-https recorded.

    The config wins when it names one (a CloudFormation-written config says what it wants);
    enable-https refuses a --domain that contradicts it, so the two never disagree in use.
    """
    if cfg.https.domain:
        return cfg.https.domain
    recorded = read_json(path) or {}
    domain = recorded.get("domain")
    if not isinstance(domain, str) or not domain:
        return None
    try:
        return domain_name(domain, path)
    except Exception:  # a hand-edited state file must not break bootstrap or status
        return None


def tls_domain(cfg) -> str | None:
    """The HTTPS domain when its certificate exists: what nginx's site renders TLS for."""
    domain = https_domain(cfg)
    return domain if domain and os.path.exists(cert_path(domain)) else None
