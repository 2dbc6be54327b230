"""`bingo-host rollback`: the switch and checks of a deployment's ApplicationStart and
ValidateService, by hand, back to the previous release that passed its checks."""

from __future__ import annotations

import logging

from ..context import make_context
from ..errors import BingoHostError
from ..ops.lock import host_lock
from . import DeployError, record
from .health import wait_healthy
from .releases import PLACEHOLDER, Paths, current_name, previous_good, update_record
from .switch import activate, switch_with_fallback

log = logging.getLogger(__name__)


def rollback(cfg, dry_run: bool = False) -> str:
    """Switch `current` back to the previous good release, reload, check through nginx; if the
    checks fail, put the release that was serving back. The release now serving (dry_run: the
    one that would serve; nothing changes, no lock is taken)."""
    ctx = make_context(cfg)
    paths = Paths(ctx.cfg.app.root)
    if dry_run:
        return _target(paths, "would switch")
    with host_lock():
        target = _target(paths, "switching")
        now_serving = current_name(paths)
        switch_with_fallback(ctx, target, now_serving)
        try:
            wait_healthy(ctx)
        except BingoHostError as exc:
            log.info(f"rollback: {target} failed its checks; switching back to {now_serving}")
            activate(ctx, now_serving)
            raise DeployError(f"rollback to {target} failed its checks, {now_serving} serves again: "
                              f"{exc}") from None
        update_record(paths, target, activated_at=record.now(), validated_at=record.now())
        if now_serving and now_serving != PLACEHOLDER:
            update_record(paths, now_serving, failed={"at": record.now(), "event": "rollback",
                                                      "reason": "rolled back by hand"})
        return target


def _target(paths: Paths, verb: str) -> str:
    """The release to roll back to, said in the log; refused while a deployment holds the host."""
    why = record.blocker(record.load(), "(rollback)")
    if why:
        raise DeployError(f"a deployment holds this host: {why}")
    now_serving = current_name(paths)
    target = previous_good(paths, now_serving)
    if not target:
        raise DeployError(f"no earlier release that passed its checks to roll back to "
                          f"(serving {now_serving})")
    log.info(f"rollback: {verb} {now_serving} -> {target}")
    return target
