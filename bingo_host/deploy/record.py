"""The deployment record that spans hooks: /var/lib/bingo-host/deploy.json (``Record``).

Each hook is a separate process, so no file lock can be held across a deployment; this record is
the deploy lock instead: a second deployment is refused while the first is alive, i.e. while one
of its hooks or its `bingo-host deploy` process runs, or for STALE_AFTER seconds (the longest a
hook may take) after its last hook. A deployment whose hook died (SIGKILL, reboot, agent
timeout) is abandoned: the next one takes over and says so. Written atomically, 0644.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Optional, TypedDict

from ..facts import processes
from ..state import DEPLOY_FILE, read_json, write_json
from . import DeployError

STATE_FILE = DEPLOY_FILE
STALE_AFTER = 3600 + 300


class Record(TypedDict):
    schema: int  # 1
    deployment_id: str  # "d-XXXXXXXXX"
    application_name: Optional[str]  # these three from the agent's environment
    deployment_group: Optional[str]
    deployment_group_id: Optional[str]
    bundle: dict  # where the revision came from (bundle_source)
    revision: Optional[dict]  # what BeforeInstall's check found (integrity.verify)
    status: str  # "in-progress" | "succeeded" | "failed"
    event: str  # the last lifecycle event a hook ran for
    event_status: str  # "running" | "ok" | "failed"
    pid: int  # the hook process running `event`
    pid_start: float  # its start time (facts.processes; what psutil's create_time says)
    driver_pid: Optional[int]  # the `bingo-host deploy` process, or None under the real agent
    driver_start: Optional[float]
    release: str  # releases/ directory name of this deployment (= deployment_id)
    previous: Optional[str]  # what `current` pointed at before ApplicationStart
    started_at: str  # ISO 8601 UTC, as are the two below
    updated_at: str
    finished_at: Optional[str]
    error: Optional[str]  # the reason it failed


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new(deployment_id: str, env, bundle: dict, revision: dict | None) -> Record:
    """The record BeforeInstall starts, its hook (this process) running."""
    pid, start = process_identity()
    driver = env.get("BINGO_HOST_DEPLOY_DRIVER_PID")
    drv = process_identity(int(driver)) if driver and driver.isdigit() else (None, None)
    return Record(schema=1, deployment_id=deployment_id, application_name=env.get("APPLICATION_NAME"),
                  deployment_group=env.get("DEPLOYMENT_GROUP_NAME"),
                  deployment_group_id=env.get("DEPLOYMENT_GROUP_ID"), bundle=bundle,
                  revision=revision, status="in-progress", event="BeforeInstall",
                  event_status="running", pid=pid, pid_start=start, driver_pid=drv[0],
                  driver_start=drv[1], release=deployment_id, previous=None, started_at=now(),
                  updated_at=now(), finished_at=None, error=None)


def bundle_source(env) -> dict:
    """Where the revision came from, as the agent's (or `bingo-host deploy`'s) environment says."""
    if env.get("BUNDLE_BUCKET"):
        return {"type": "s3", "bucket": env.get("BUNDLE_BUCKET"), "key": env.get("BUNDLE_KEY"),
                "version": env.get("BUNDLE_VERSION"), "etag": env.get("BUNDLE_ETAG")}
    if env.get("BINGO_HOST_BUNDLE"):
        return {"type": "file", "path": env.get("BINGO_HOST_BUNDLE"),
                "sha256": env.get("BINGO_HOST_BUNDLE_SHA256")}
    return {"type": "unknown"}


def load(path: str | None = None) -> Record | None:
    """The recorded deployment; None when there is none (junk never blocks deploys)."""
    return read_json(path or STATE_FILE)


def save(state: Record, path: str | None = None) -> None:
    state["updated_at"] = now()
    write_json(path or STATE_FILE, state)


def fail(deployment_id: str, reason: str) -> None:
    """Mark deployment_id failed, if the record still names it in progress (its hook failed, was
    stopped, or was killed by a timeout and could not say so itself): the deploy lock is free."""
    st = load()
    if st and st.get("deployment_id") == deployment_id and st.get("status") == "in-progress":
        st.update(status="failed", event_status="failed", finished_at=now(),
                  error=reason.splitlines()[0] if reason else "failed")
        save(st)


def _alive(pid, start) -> bool:
    if not pid:
        return False
    try:
        return processes.is_running(int(pid), float(start or 0))
    except (TypeError, ValueError):
        return False


def process_identity(pid: int | None = None) -> tuple[int, float]:
    pid = pid or os.getpid()
    return pid, processes.start_time(pid)


def blocker(state: Record | None, deployment_id: str, stale_after: float = STALE_AFTER) -> str | None:
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


def require(deployment_id: str) -> Record:
    """The record of deployment_id, which BeforeInstall must have started."""
    state = load()
    if not state or state.get("deployment_id") != deployment_id:
        holder = state.get("deployment_id") if state else None
        raise DeployError(f"deployment {deployment_id} did not run BeforeInstall on this host "
                          f"(the deploy state names {holder or 'no deployment'}); refusing to go on")
    if state.get("status") != "in-progress":
        raise DeployError(f"deployment {deployment_id} is already {state.get('status')}; refusing to go on")
    return state
