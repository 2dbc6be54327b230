"""ApplicationStop: the one event whose hook does nothing (and loads no config)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def run(ctx, env) -> None:
    """ApplicationStop: nothing, so appspec.yml names no script for it: the old release keeps
    serving until ApplicationStart switches."""
    log.info("deploy: nothing to stop: the serving release keeps serving until ApplicationStart")
