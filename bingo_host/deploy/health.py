"""Whether the serving release answers through nginx: what ValidateService and `bingo-host
rollback` judge a release by."""

from __future__ import annotations

import logging
import time

from ..facts import http
from . import DeployError, env_seconds

log = logging.getLogger(__name__)

VALIDATE_TIMEOUT = 60.0  # $BINGO_HOST_VALIDATE_TIMEOUT overrides


def wait_healthy(ctx) -> None:
    """The static index and the health check through nginx (facts/http.py's rule: 200 for both),
    retried until the deadline; DeployError naming the last failure after it."""
    tls_domain = ctx.facts.tls_domain
    deadline_s = env_seconds("BINGO_HOST_VALIDATE_TIMEOUT", VALIDATE_TIMEOUT)
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        failed = None
        for ask in (http.index, http.health):
            answer = ask(ctx.cfg, tls_domain, timeout=10)
            if not answer.ok:
                failed = f"GET {answer.url}: {answer.why()}"
                break
        if failed is None:
            log.info(f"validate: / and {ctx.cfg.app.health_path} answered 200 through nginx "
                     f"({answer.url}; attempt {attempt})")
            return
        if time.monotonic() >= deadline:
            raise DeployError(f"health check through nginx failed for {deadline_s:.0f} s: {failed}")
        time.sleep(1)
