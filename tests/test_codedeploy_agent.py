"""Deploys through the real AWS CodeDeploy agent (`codedeploy-local`) on the shared bootstrapped
test host: the path every EC2 deployment takes. The agent unpacks the revision (zip with the
system's unzip, tgz with tar), copies `files` with its own installer and runs our hooks with its
own environment, process groups and timeouts.

In file order, on one release history (before test_deploy.py's emulated deploys):
first deploy (zip) -> unchanged requirements (tgz) -> changed requirements (zip) -> a release
whose ValidateService fails (no database driver) -> the agent's root_dir followed -> hooks fail
loudly without the revision; then the emulator checked against the agent on a probe revision.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests import codedeploy_agent as agent
from tests.conftest import BIN
from tests.deploying import (ENV, Bundles, deploy_state, health_release, record, serving,
                             use_the_app)


@pytest.fixture(scope="module")
def host(host_pool):
    bootstrapped = host_pool.bootstrapped()
    assert bootstrapped.first.returncode == 0, bootstrapped.first.stdout + bootstrapped.first.stderr
    agent.install(bootstrapped.host)
    return bootstrapped.host


@pytest.fixture(scope="module")
def bundles(host, wheel, tmp_path_factory):
    return Bundles(host, wheel, tmp_path_factory.mktemp("agent-bundles"))


def agent_deploy(host, bundle, bundle_type, env=None, **kw):
    r = agent.deploy(host, bundle, bundle_type, env={**ENV, **(env or {})}, **kw)
    return r, (agent.deployment_id(r.stdout) if "within folder" in r.stdout else None)


def test_first_deploy_through_the_agent(host, bundles):
    r, dep = agent_deploy(host, bundles.make("agent-first"), "zip")
    assert r.returncode == 0 and "Local deployment successful" in r.stdout, r.stdout + r.stderr
    assert serving(host) == dep and health_release(host) == dep
    use_the_app("agent")
    # The app created its tables in MariaDB with its own credentials, on its first request.
    tables = host.run(["mariadb", "-N", "-e", "SHOW TABLES", "bingo"]).stdout.split()
    assert "User" in tables, tables
    assert host.run([BIN, "status"], check=False).returncode == 0
    rec = record(host, dep)
    assert rec["validated_at"] and rec["deployment_group"] == "bingo-prod"
    assert deploy_state(host)["status"] == "succeeded"
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep}/logs/scripts.log")
    assert "virtualenv: uv pip install -r requirements.txt -r mysql-requirements.txt" in log


def test_unchanged_requirements_through_the_agent_tgz(host, bundles):
    before = serving(host)
    start = time.monotonic()
    r, dep = agent_deploy(host, bundles.make("agent-same", fmt="tgz"), "tgz")
    took = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    assert record(host, dep)["venv_reused"] is True
    assert serving(host) == dep != before and health_release(host) == dep
    assert took < 60, f"an unchanged-requirements deploy took {took:.1f} s"


def test_changed_requirements_through_the_agent(host, bundles):
    r, dep = agent_deploy(host, bundles.make("agent-changed", extra_requirement="idna==3.7"), "zip")
    assert r.returncode == 0, r.stdout + r.stderr
    assert record(host, dep)["venv_reused"] is False
    assert health_release(host) == dep
    use_the_app("agent-changed")


def test_a_failed_first_bind_through_the_agent_keeps_the_old_release(host, bundles):
    before = serving(host)
    r, dep = agent_deploy(host, bundles.make("agent-nodriver", mysql_requirements=""), "zip")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "hooks/application_start.sh" in r.stdout + r.stderr
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep}/logs/scripts.log")
    assert "so it is not switched to: ModuleNotFoundError: No module named 'MySQLdb'" in log, log
    assert serving(host) == before and health_release(host) == before
    assert record(host, dep)["failed"]["event"] == "ApplicationStart"


def test_a_deployment_that_ends_after_after_install_leaves_no_slot_behind(host, bundles):
    """AfterInstall starts the release on the slot that does not serve (switch.prestart), never
    served from there; a deployment that goes no further (stopped, its agent lost) leaves that
    slot beside the serving one until the next deployment's BeforeInstall drains and stops it,
    before its build. That one starts its own release there, and its switch finds it started."""
    before = serving(host)
    r, dep = agent_deploy(host, bundles.make("agent-halfway", fmt="tgz"), "tgz",
                          events="BeforeInstall,Install,AfterInstall")
    assert r.returncode == 0, r.stdout + r.stderr
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep}/logs/scripts.log")
    started = re.search(rf"uwsgi: slot (\w+) loading {dep} beside slot (\w+)", log)
    assert started, log
    idle, serving_slot = started.groups()
    vassals = host.run(["ls", "/etc/bingo-host/vassals"]).stdout.split()
    assert vassals == sorted([f"music-bingo-{idle}.ini", f"music-bingo-{serving_slot}.ini"]), vassals
    assert serving(host) == before and health_release(host) == before

    r, dep2 = agent_deploy(host, bundles.make("agent-after-halfway", fmt="tgz"), "tgz",
                           env={"BINGO_HOST_DEPLOY_STALE_AFTER": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep2}/logs/scripts.log")
    before_install = log.split("LifecycleEvent - AfterInstall")[0]
    assert f"uwsgi: stopped music-bingo-{idle}.ini" in before_install, log
    assert f"uwsgi: slot {idle} was started for {dep2} already" in log, log
    assert host.run(["ls", "/etc/bingo-host/vassals"]).stdout.split() == [f"music-bingo-{idle}.ini"]
    assert serving(host) == dep2 and health_release(host) == dep2


def test_hooks_follow_the_agents_root_dir(host, bundles):
    config = host.read_file(agent.CONFIG)
    moved = re.sub(r":root_dir:.*", ":root_dir: '/var/lib/codedeploy-moved'", config)
    assert moved != config
    host.put_file(agent.CONFIG, moved)
    try:
        r, dep = agent_deploy(host, bundles.make("agent-moved", fmt="tgz"), "tgz")
        assert r.returncode == 0, r.stdout + r.stderr
        assert host.run(["test", "-d", f"/var/lib/codedeploy-moved/bingo-group/{dep}/deployment-archive"],
                        check=False).returncode == 0
        assert health_release(host) == dep
    finally:
        host.put_file(agent.CONFIG, config)


def test_a_hook_without_its_revision_fails_loudly(host):
    before = host.read_file("/var/lib/bingo-host/deploy.json")
    r = host.run([BIN, "hook", "BeforeInstall"], check=False,
                 env={"LIFECYCLE_EVENT": "BeforeInstall", "DEPLOYMENT_ID": "d-NOWHERE01",
                      "DEPLOYMENT_GROUP_ID": "bingo-group", "DEPLOYMENT_GROUP_NAME": "bingo-prod",
                      "APPLICATION_NAME": "music-bingo"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "/opt/codedeploy-agent/deployment-root/bingo-group/d-NOWHERE01/deployment-archive" in r.stderr
    assert host.read_file("/var/lib/bingo-host/deploy.json") == before


# -- the agent restarted after a deployment (it hoards memory), never during one --

# codedeploy-local runs no daemon, so a stand-in unit plays the agent's: what matters is that the
# hooks find codedeploy-agent.service and that `systemctl try-restart` reaches it.
STAND_IN_AGENT = """[Unit]
Description=stand-in for the CodeDeploy agent daemon (tests)
[Service]
ExecStart=/bin/sleep infinity
"""
AGENT_UNIT = "/etc/systemd/system/codedeploy-agent.service"
TRACKING = "/opt/codedeploy-agent/deployment-root/ongoing-deployment"


@pytest.fixture
def agent_daemon(host):
    host.put_file(AGENT_UNIT, STAND_IN_AGENT)
    host.run_shell("systemctl daemon-reload && systemctl start codedeploy-agent")
    try:
        yield lambda: host.run(["systemctl", "show", "-p", "MainPID", "--value", "codedeploy-agent"]).stdout.strip()
    finally:
        host.run_shell(f"systemctl stop bingo-host-agent-restart.timer bingo-host-agent-restart.service "
                       f"codedeploy-agent; rm -rf {AGENT_UNIT} {TRACKING}; systemctl daemon-reload",
                       check=False)


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def test_agent_is_restarted_after_a_deployment_not_during_one(host, bundles, agent_daemon):
    env = {**ENV, "BINGO_HOST_AGENT_RESTART_DELAY": "2"}
    first_pid = agent_daemon()
    r = agent.deploy(host, bundles.make("agent-restart", fmt="tgz"), "tgz", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    dep = agent.deployment_id(r.stdout)
    log = host.read_file(f"/opt/codedeploy-agent/deployment-root/bingo-group/{dep}/logs/scripts.log")
    assert "the CodeDeploy agent restarts in 2 s" in log, log
    assert wait_for(lambda: agent_daemon() != first_pid, 30), "the agent was not restarted"

    # While the agent tracks an event of another deployment, the restart waits for it.
    second_pid = agent_daemon()
    host.run_shell(f"mkdir -p {TRACKING} && echo cmd-id > {TRACKING}/d-OTHER00001")
    r = agent.deploy(host, bundles.make("agent-restart-2", fmt="tgz"), "tgz", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    waiting = lambda: host.run(["systemctl", "is-active", "bingo-host-agent-restart.service"],  # noqa: E731
                               check=False).stdout.strip() == "active"
    assert wait_for(waiting, 30), "the restart service never started"
    time.sleep(6)  # longer than its poll interval
    assert agent_daemon() == second_pid and waiting()
    host.run(["rm", f"{TRACKING}/d-OTHER00001"])
    assert wait_for(lambda: agent_daemon() != second_pid, 30), "the agent was not restarted once idle"
    journal = host.run(["journalctl", "-u", "bingo-host-agent-restart.service", "--no-pager"]).stdout
    assert "waiting: the agent is running a lifecycle event of d-OTHER00001" in journal, journal


# -- the emulator (`bingo-host deploy`) against the agent, on a revision that only observes --

PROBE_APPSPEC = """version: 0.0
os: linux
files:
  - source: /payload
    destination: /tmp/cd-probe/installed
file_exists_behavior: OVERWRITE
hooks:
  BeforeInstall:
    - location: hooks/observe.sh
      timeout: 60
  AfterInstall:
    - location: hooks/slow.sh
      timeout: 2
"""
OBSERVE = """#!/bin/sh
out=/tmp/cd-probe/out/$DEPLOYMENT_ID
mkdir -p /tmp/cd-probe/out
env | cut -d= -f1 | sort > $out.env
pwd > $out.cwd
echo "$0" > $out.script
echo "$$ $(ps -o pgid= -p $$)" > $out.pgid
"""
SLOW = """#!/bin/sh
trap 'echo TERM > /tmp/cd-probe/out/$DEPLOYMENT_ID.term; exit 143' TERM
sleep 30 &
wait
"""


@pytest.fixture(scope="module")
def probe_bundle(host, tmp_path_factory) -> str:
    tree = tmp_path_factory.mktemp("probe")
    (tree / "appspec.yml").write_text(PROBE_APPSPEC)
    (tree / "payload").mkdir()
    (tree / "payload" / "file.txt").write_text("probe\n")
    (tree / "hooks").mkdir()
    for name, text in (("observe.sh", OBSERVE), ("slow.sh", SLOW)):
        (tree / "hooks" / name).write_text(text)
        (tree / "hooks" / name).chmod(0o755)
    archive = shutil.make_archive(str(tree.parent / "probe"), "zip", tree)
    host.put_file("/root/bundles/probe.zip", Path(archive).read_bytes())
    return "/root/bundles/probe.zip"


def observed(host, dep: str) -> dict:
    read = lambda ext: host.read_file(f"/tmp/cd-probe/out/{dep}.{ext}").strip()  # noqa: E731
    pid, pgid = read("pgid").split()
    return {"env": set(read("env").split()), "cwd": read("cwd"), "script": read("script"),
            "own_group": pid == pgid, "term": read("term")}


def test_the_emulator_runs_hooks_like_the_agent(host, probe_bundle):
    r, dep = agent_deploy(host, probe_bundle, "zip", group_id="probe-agent", group_name="probe")
    assert r.returncode != 0 and "execute your script at" in r.stdout, r.stdout + r.stderr
    assert r.stdout.split("execute your script at ")[1].split()[0].endswith("/hooks/slow.sh")
    by_agent = observed(host, dep)
    r = host.run([BIN, "deploy", probe_bundle, "--deployment-id", "d-EMULATED1"], check=False,
                 env=ENV, timeout=120)
    assert r.returncode == 1 and "failed to complete in 2 seconds" in r.stderr, r.stdout + r.stderr
    by_emulator = observed(host, "d-EMULATED1")
    # The same variables (bingo-host's informational extras aside), the revision at the same
    # place under the agent's root_dir, each script in its own process group, SIGTERM on timeout.
    extras = {"BINGO_HOST_DEPLOY_DRIVER_PID", "BINGO_HOST_BUNDLE", "BINGO_HOST_BUNDLE_SHA256"}
    assert by_emulator["env"] - extras == by_agent["env"], (by_emulator["env"] ^ by_agent["env"])
    for seen, d in ((by_agent, dep), (by_emulator, "d-EMULATED1")):
        assert re.fullmatch(rf"/opt/codedeploy-agent/deployment-root/[^/]+/{d}/deployment-archive/"
                            r"hooks/observe\.sh", seen["script"]), seen["script"]
        assert seen["own_group"] and seen["term"] == "TERM"
    assert by_emulator["cwd"] == by_agent["cwd"]
