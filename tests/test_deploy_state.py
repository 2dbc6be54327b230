"""The deploy lock that spans hook processes (deploy.json): who may start a deployment."""

from __future__ import annotations

import os
import subprocess

from bingo_host.deploy import record


def running(**kw) -> dict:
    base = {"deployment_id": "d-OTHER0001", "status": "in-progress", "event": "AfterInstall",
            "event_status": "running", "pid": None, "pid_start": None, "driver_pid": None,
            "driver_start": None, "updated_at": record.now()}
    return {**base, **kw}


def test_nothing_recorded_or_finished_or_same_deployment():
    assert record.blocker(None, "d-NEW") is None
    assert record.blocker(running(status="succeeded"), "d-NEW") is None
    assert record.blocker(running(status="failed"), "d-NEW") is None
    assert record.blocker(running(), "d-OTHER0001") is None


def test_a_live_hook_or_driver_blocks():
    pid, start = record.process_identity()
    assert "running its AfterInstall hook" in record.blocker(running(pid=pid, pid_start=start), "d-NEW")
    assert "bingo-host deploy" in record.blocker(
        running(event_status="ok", driver_pid=pid, driver_start=start), "d-NEW")


def test_a_killed_hook_or_driver_is_abandoned():
    p = subprocess.Popen(["true"])
    p.wait()
    dead = {"pid": p.pid, "pid_start": 1.0}
    assert record.blocker(running(**dead), "d-NEW") is None
    assert record.blocker(running(event_status="ok", driver_pid=p.pid, driver_start=1.0), "d-NEW") is None
    # A recycled pid with another start time is not the hook.
    assert record.blocker(running(pid=os.getpid(), pid_start=1.0), "d-NEW") is None


def test_between_hooks_of_the_agent_blocks_until_stale():
    between = running(event_status="ok", event="BeforeInstall")
    assert "between hooks" in record.blocker(between, "d-NEW")
    old = dict(between, updated_at="2000-01-01T00:00:00Z")
    assert record.blocker(old, "d-NEW") is None


def test_a_killed_but_unreaped_process_is_not_alive():
    import signal
    import time

    import psutil

    child = subprocess.Popen(["sleep", "60"])
    started = psutil.Process(child.pid).create_time()
    assert record._alive(child.pid, started)
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # killed, not yet reaped
        assert time.monotonic() < deadline
    assert not record._alive(child.pid, started)
    child.wait()
