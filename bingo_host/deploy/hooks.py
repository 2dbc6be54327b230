"""`bingo-host hook EVENT`: one lifecycle event (events/ says what each does) for the deployment
named in the environment, under the host lock, its progress kept in the deployment record.

A hook that fails, or that is stopped by SIGTERM or SIGHUP (the agent's timeout), unwinds
through one cleanup stack (ops.cleanup): what the event half made is removed, the record says
failed and why, and the agent's restart is scheduled, since no later hook runs.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time

from ..context import make_context
from ..facts import processes
from ..ops.cleanup import Cleanup
from ..ops.lock import host_lock
from . import BundleError, agent_restart, events, record

log = logging.getLogger(__name__)


def run_hook(cfg, event: str, env=None) -> None:
    """Run one lifecycle event for the deployment named in env (os.environ by default)."""
    env = dict(os.environ if env is None else env)
    if event not in events.EVENTS:
        raise BundleError(f"unknown lifecycle event {event!r} (bingo-host handles "
                          f"{', '.join(events.EVENTS)})")
    if env.get("LIFECYCLE_EVENT") and env["LIFECYCLE_EVENT"] != event:
        raise BundleError(f"called for {event} but LIFECYCLE_EVENT is {env['LIFECYCLE_EVENT']}")
    module = events.load(event)  # its imports are start-up: before `started`
    if event == "ApplicationStop":
        return module.run(None, env)
    started = time.monotonic()
    deployment_id = env.get("DEPLOYMENT_ID")
    if not deployment_id:
        raise BundleError("DEPLOYMENT_ID is not set: hooks run under the CodeDeploy agent "
                          "or `bingo-host deploy`")
    handler = module.run
    if event == "BeforeInstall":
        handler = functools.partial(handler, revision=module.check_revision(cfg, env))
    ctx = make_context(cfg)
    with Cleanup() as undo:
        undo.register(agent_restart.schedule)  # no later hook runs: the deployment is over here
        with host_lock():
            if event != "BeforeInstall":
                st = record.require(deployment_id)
                pid, start = record.process_identity()
                st.update(event=event, event_status="running", pid=pid, pid_start=start)
                record.save(st)
            undo.register(_record_failure, deployment_id)
            handler(ctx, env)
            st = record.load()
            st["event_status"] = "ok"
            if event == "ValidateService":
                st.update(status="succeeded", finished_at=record.now())
            record.save(st)
    if event == "ValidateService":
        agent_restart.schedule()
    log.info(f"hook {event}: done in {time.monotonic() - started:.2f} s "
             f"(+ {_startup_seconds(started):.2f} s starting bingo-host)")


def _record_failure(deployment_id: str) -> None:
    """A cleanup: the record says why the hook failed (the exception the cleanups run for)."""
    exc = sys.exc_info()[1]
    record.fail(deployment_id, str(exc) or type(exc).__name__)


def _startup_seconds(hook_started: float) -> float:
    """How long this process ran before the hook began (the hook script's shell, the interpreter,
    bingo-host's imports and reading the config), which a deployment pays once per hook."""
    return max(0.0, processes.seconds_running() - (time.monotonic() - hook_started))
