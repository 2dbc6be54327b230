"""The guard of the CodeDeploy agent's restart after a deployment (deploy/agent_restart.py): the
agent is only restarted when neither it nor bingo-host has a deployment in progress. The host
test (a transient timer after ValidateService, the agent restarted, held back while a tracking
file names a deployment) is in test_codedeploy_agent.py."""

from __future__ import annotations

import os
import time

from bingo_host.deploy import agent, agent_restart, record


def agent_config(tmp_path) -> str:
    cfg = tmp_path / "codedeployagent.yml"
    cfg.write_text(f"---\n:root_dir: {tmp_path / 'deployment-root'}\n")
    return str(cfg)


def track(tmp_path, deployment_id: str, age: float = 0) -> None:
    """What the agent daemon writes while it runs one lifecycle event of deployment_id."""
    d = tmp_path / "deployment-root" / "ongoing-deployment"
    d.mkdir(parents=True, exist_ok=True)
    f = d / deployment_id
    f.write_text("WyJob3N0Q29tbWFuZElkZW50aWZpZXIiXQ==")
    then = time.time() - age
    os.utime(f, (then, then))


def test_ongoing_deployments_are_the_fresh_tracking_files(tmp_path):
    cfg = agent_config(tmp_path)
    assert agent.ongoing_deployments(cfg) == []  # no tracking directory yet
    track(tmp_path, "d-RUNNING01")
    track(tmp_path, "d-LEFTOVER1", age=agent.TRACKING_STALE_AFTER + 60)  # the agent ignores it too
    assert agent.ongoing_deployments(cfg) == ["d-RUNNING01"]


def test_busy_while_the_agent_runs_an_event(tmp_path):
    cfg, state = agent_config(tmp_path), str(tmp_path / "deploy.json")
    assert agent_restart.busy(cfg, state) is None
    track(tmp_path, "d-RUNNING01")
    assert "lifecycle event of d-RUNNING01" in agent_restart.busy(cfg, state)


def test_busy_while_bingo_host_has_a_live_deployment(tmp_path):
    cfg, state = agent_config(tmp_path), str(tmp_path / "deploy.json")
    pid, start = record.process_identity()
    deployment = {"deployment_id": "d-HOOKS0001", "status": "in-progress", "event": "ApplicationStart",
              "event_status": "running", "pid": pid, "pid_start": start, "driver_pid": None}
    record.save(deployment, state)
    assert "running its ApplicationStart hook" in agent_restart.busy(cfg, state)
    record.save({**deployment, "event_status": "ok", "pid": None}, state)  # between two hooks
    assert "between hooks" in agent_restart.busy(cfg, state)
    record.save({**deployment, "status": "succeeded", "event": "ValidateService", "event_status": "ok"}, state)
    assert agent_restart.busy(cfg, state) is None
