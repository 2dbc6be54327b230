"""The deploy lock that spans hooks: /var/lib/bingo-host/deploy.json.

Each hook is a separate process, so no file lock can be held from BeforeInstall to
ValidateService. Instead BeforeInstall records the deployment here, and every later hook (and a
different deployment's BeforeInstall) reads it: a second deployment is refused while the first
is alive. A deployment is alive while one of its hooks runs, while the `bingo-host deploy`
process driving it runs, or, between two hooks of the real agent, for STALE_AFTER seconds after
its last hook finished (the longest a hook may take). A deployment whose hook died (SIGKILL,
reboot, agent timeout) is abandoned: the next deployment takes over and says so.

Schema (version 1), written atomically, 0644:
    schema            1
    deployment_id     "d-XXXXXXXXX"
    application_name, deployment_group, deployment_group_id   from the agent's environment
    bundle            where the revision came from (see hooks.bundle_source)
    revision          what BeforeInstall's check found (integrity.verify): signed, created,
                      manifest_sha256, application, deployment_group
    status            "in-progress" | "succeeded" | "failed"
    event             the last lifecycle event a hook ran for
    event_status      "running" | "ok" | "failed"
    pid, pid_start    the hook process running `event` (pid_start: psutil create_time)
    driver_pid, driver_start   the `bingo-host deploy` process, or null under the real agent
    release           releases/ directory name of this deployment (= deployment_id)
    previous          what `current` pointed at before ApplicationStart ("placeholder" or a release)
    started_at, updated_at, finished_at   ISO 8601 UTC
    error             the reason it failed, or null
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from ..state import DEPLOY_FILE, read_json, write_json
from . import DeployError

STATE_FILE = DEPLOY_FILE
STALE_AFTER = 3600 + 300


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load(path: str | None = None) -> dict | None:
    """The recorded deployment; None when there is none (junk never blocks deploys)."""
    return read_json(path or STATE_FILE)


def save(state: dict, path: str | None = None) -> None:
    state["updated_at"] = now()
    write_json(path or STATE_FILE, state)


def _alive(pid, start) -> bool:
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(int(pid))
        # A killed process that its parent has not reaped yet is a zombie: it drives nothing.
        return (abs(proc.create_time() - float(start or 0)) < 1.0
                and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def process_identity(pid: int | None = None) -> tuple[int, float]:
    import psutil

    p = psutil.Process(pid or os.getpid())
    return p.pid, p.create_time()


def blocker(state: dict | None, deployment_id: str, stale_after: float = STALE_AFTER) -> str | None:
    """Why deployment_id may not start now, or None (the recorded deployment is over or dead)."""
    if not state or state.get("status") != "in-progress" or state.get("deployment_id") == deployment_id:
        return None
    other = state.get("deployment_id")
    if state.get("event_status") == "running" and _alive(state.get("pid"), state.get("pid_start")):
        return f"deployment {other} is running its {state.get('event')} hook (pid {state.get('pid')})"
    if _alive(state.get("driver_pid"), state.get("driver_start")):
        return f"deployment {other} is still being driven by `bingo-host deploy` (pid {state.get('driver_pid')})"
    if state.get("driver_pid"):
        return None  # its driver died: nothing will run its next hook
    if state.get("event_status") == "ok":
        try:
            updated = datetime.strptime(state["updated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc).timestamp()
        except (KeyError, ValueError):
            updated = 0
        age = time.time() - updated
        if age < stale_after:
            return (f"deployment {other} is between hooks (its {state.get('event')} hook finished "
                    f"{age:.0f} s ago); it is considered abandoned after {stale_after:.0f} s")
    return None


def require(deployment_id: str) -> dict:
    """The state of deployment_id, which BeforeInstall must have started."""
    state = load()
    if not state or state.get("deployment_id") != deployment_id:
        holder = state.get("deployment_id") if state else None
        raise DeployError(f"deployment {deployment_id} did not run BeforeInstall on this host "
                          f"(the deploy state names {holder or 'no deployment'}); refusing to go on")
    if state.get("status") != "in-progress":
        raise DeployError(f"deployment {deployment_id} is already {state.get('status')}; refusing to go on")
    return state
