"""`bingo-host bootstrap`: converge this host, step by step, under the host lock."""

from __future__ import annotations

import logging
import time

from ..context import make_context
from . import engine, release
from ..config import Config
from ..errors import BingoHostError
from ..ops.lock import host_lock
from .steps import (app, firewall, mariadb, monitoring, nginx, packages, patches, resize, secrets, swap,
                    timers, uwsgi, volume)

log = logging.getLogger(__name__)

# swap first: a small instance must not run its package manager without it (dnf is OOM-killed on
# a 512 MiB AL2023 host). firewall: after app (the user it denies exists), before uwsgi (whose
# unit requires it). resize last: it records what the run sized for once every other step converged.
STEPS = (swap, packages, secrets, volume, mariadb, app, firewall, uwsgi, nginx, patches, timers, monitoring,
         resize)


def converge_host(cfg: Config, dry_run: bool = False, remove_unknown_db_accounts: bool = False) -> int:
    """0 converged (changed or not), 1 a step failed."""
    ctx = make_context(cfg, dry_run=dry_run)
    ctx.remove_unknown_db_accounts = remove_unknown_db_accounts
    start = time.monotonic()
    with host_lock():
        results = engine.run_steps(ctx, STEPS)
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        results.append(_serve_kept_release(cfg, dry_run))
        failed = [r for r in results if r.status == "failed"]
    took = time.monotonic() - start
    changed = [r for r in results if r.status == "changed"]
    if failed:
        log.error(f"bootstrap: FAILED at step {failed[0].name} after {took:.1f} s "
                  f"({len(changed)} steps changed before it)")
        return 1
    if dry_run:
        log.info(f"bootstrap (dry run): {len(changed)} of {len(results)} steps would change; nothing was changed")
    elif changed:
        log.info(f"bootstrap: converged in {took:.1f} s; changed {len(changed)} of {len(results)} steps "
                 f"({', '.join(r.name for r in changed)})")
    else:
        log.info(f"bootstrap: already converged, nothing changed ({len(results)} steps in {took:.1f} s)")
    return 0


def _serve_kept_release(cfg: Config, dry_run: bool) -> engine.StepResult:
    """release.serve_kept as one more step's result and line (STEP=release in the journal)."""
    start = time.monotonic()
    try:
        status, detail = release.serve_kept(cfg, dry_run=dry_run)
    except BingoHostError as exc:
        status, detail = "failed", str(exc)
    result = engine.StepResult(release.NAME, "changed" if status == "would change" else status, detail,
                               time.monotonic() - start)
    engine.report(result, dry_run=dry_run)
    return result
