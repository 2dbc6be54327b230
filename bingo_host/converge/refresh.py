"""`bingo-host secrets refresh` (and its hourly timer): follow secrets rotated where they live.

Every ssm:/secretsmanager: value is read again (the secrets step). When the app's database
password changed, its database user takes the new one first while the previous one stays valid
(the mariadb step), then bingo.ini is rewritten (app step) and the app starts with it on the
other release slot before the serving one stops (uwsgi step): a worker, or another host, still
holding the old password keeps connecting, so no request fails. The same steps as bootstrap, so nothing changes when nothing rotated.
"""

from __future__ import annotations

import logging
import os
import pwd
import time

from ..context import make_context
from . import engine
from ..config import Config
from ..deploy.releases import Paths
from ..facts.uwsgi import workers
from ..ops.lock import host_lock
from .steps import app, firewall, mariadb, secrets, uwsgi

# firewall: the uwsgi step writes the emperor's unit, which Requires= the firewall's.
STEPS = (secrets, mariadb, app, firewall, uwsgi)
RELOAD_TIMEOUT = 90.0

log = logging.getLogger(__name__)


def _workers(ctx) -> set[int]:
    try:
        uid = pwd.getpwnam(ctx.cfg.app.user).pw_uid
    except KeyError:
        return set()
    return {pid for pid, _ in workers(Paths(ctx.cfg.app.root).releases, uid)}


def _wait_replaced(ctx, old: set[int]) -> None:
    """Until none of the workers that ran before the chain reload is left."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    start = time.monotonic()
    while time.monotonic() < deadline:
        now = _workers(ctx)
        if now and not now & old:
            log.info(f"refresh: all {len(now)} uWSGI workers reloaded ({time.monotonic() - start:.1f} s)")
            return
        time.sleep(0.3)
    log.warning(f"refresh: uWSGI workers not all reloaded within {RELOAD_TIMEOUT:.0f} s (see journalctl "
                "-u bingo-uwsgi); they still hold the previous password, which the database keeps accepting")


def refresh_secrets(cfg: Config, dry_run: bool = False) -> int:
    """0 in step with the secrets (changed or not), 1 a step failed."""
    ctx = make_context(cfg, dry_run=dry_run)
    with host_lock():
        results = engine.run_steps(ctx, STEPS[:1])
        changed = results[-1].status != "failed" and ctx.differs(ctx.managed("bingo.ini"))
        before = _workers(ctx) if changed and not dry_run else set()  # to wait for their reload
        if results[-1].status != "failed":
            results += engine.run_steps(ctx, STEPS[1:])
    if any(r.status == "failed" for r in results):
        log.error("refresh: FAILED; bingo.ini and the app are as they were unless a step above says otherwise")
        return 1
    if not changed:
        log.info("refresh: every secret as rendered, nothing changed")
        return 0
    if before and os.path.exists(f"{cfg.app.root}/current/application.py"):
        _wait_replaced(ctx, before)
    log.info("refresh: bingo.ini " + ("would be rewritten" if dry_run else "rewritten with the new values"))
    return 0
