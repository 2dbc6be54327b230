"""ValidateService: the new release checked through nginx, the previous one put back if it fails."""

from __future__ import annotations

import logging

from ...errors import BingoHostError
from .. import DeployError, kept, record
from ..health import wait_healthy
from ..releases import PLACEHOLDER, Paths, current_name, update_record
from ..switch import activate

log = logging.getLogger(__name__)


def run(ctx, env) -> None:
    """ValidateService: the index and app.health_path through nginx (health.py; the health
    check answers 200 only when the app reaches its database), retried until a deadline; on
    failure switch back to the previous release and fail. After it (as after any failed hook:
    no later hook runs) the agent's restart is scheduled (agent_restart.py)."""
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if current_name(paths) != name:
        raise DeployError(f"{paths.current} points at {current_name(paths)}, not at {name}")
    try:
        wait_healthy(ctx)
    except BingoHostError as exc:
        previous = (record.load() or {}).get("previous")
        update_record(paths, name, failed={"at": record.now(), "event": "ValidateService",
                                           "reason": str(exc)})
        if not previous:
            raise DeployError(f"{exc}; there is no previous release to switch back to") from None
        log.info(f"validate: FAILED ({exc}); switching back to {previous}")
        activate(ctx, previous)
        if previous != PLACEHOLDER:
            wait_healthy(ctx)
        raise DeployError(f"ValidateService failed, rolled back to {previous}: {exc}") from None
    update_record(paths, name, validated_at=record.now())
    directory = kept.where(ctx.cfg)
    if directory:
        try:
            log.info(f"validate: {kept.keep(directory, env)}")
        except (OSError, BingoHostError) as exc:  # it serves and passed: not worth failing it
            kept.forget(directory)
            log.warning(f"validate: could not keep the revision on the data volume ({exc}); none "
                        "is kept, so a replacement instance would serve no release until a deployment")
