"""Keep the CodeDeploy agent from hoarding memory: restart it after a deployment, never during one.

The agent's memory grows with every deployment and is not given back (aws-codedeploy-agent
issues #32 and #308); on a 512 MiB t3a.nano that is memory taken from the app and MariaDB. The
last hook, ValidateService, cannot restart the agent itself: the agent waits for the hook, and
stopping it fails the event. So the hook's tail asks systemd for a transient timer
(`systemd-run --on-active`) whose service, once the hook has returned, runs
`bingo-host restart-agent`: it waits until no deployment is in progress (neither the agent's
tracking files nor bingo-host's deploy lock name one) and then `systemctl try-restart`s the
agent. Hosts without the agent's unit (`bingo-host deploy` only) get no timer.
"""

from __future__ import annotations

import logging
import time

from .. import layout, subp
from ..facts import systemd
from . import agent, env_seconds, record

log = logging.getLogger(__name__)

AGENT_UNIT = "codedeploy-agent.service"
UNIT = "bingo-host-agent-restart"
DELAY = 30.0  # s after the hook; $BINGO_HOST_AGENT_RESTART_DELAY overrides
IDLE_WAIT = 3600.0  # give up after waiting this long for a quiet moment (the next deployment retries)
POLL = 5.0


def busy(config: str | None = None, state_file: str = record.STATE_FILE) -> str | None:
    """Why restarting the agent now would cut a deployment short, or None: the agent runs a
    lifecycle event, or bingo-host's deploy lock has a live deployment (also between hooks)."""
    ongoing = agent.ongoing_deployments(config)
    if ongoing:
        return f"the agent is running a lifecycle event of {', '.join(ongoing)}"
    return record.blocker(record.load(state_file), "(agent restart)")


def agent_installed() -> bool:
    return systemd.states(AGENT_UNIT)[AGENT_UNIT].load == "loaded"


def schedule() -> None:
    """The transient timer; never fails the deployment (at worst the agent keeps its memory)."""
    try:
        if not agent_installed():
            return
    except Exception as exc:  # systemctl missing or broken: say so, go on
        log.warning(f"deploy: cannot tell whether the CodeDeploy agent is installed: {exc}")
        return
    delay = env_seconds("BINGO_HOST_AGENT_RESTART_DELAY", DELAY)
    r = subp.run(["systemd-run", "--quiet", "--collect", f"--unit={UNIT}", f"--on-active={delay:g}s",
                  "--timer-property=AccuracySec=1s", "--timer-property=RemainAfterElapse=no",
                  "--description=Restart the CodeDeploy agent once no deployment runs (frees its memory)",
                  layout.BIN, "restart-agent"], rcs=range(256), timeout=30)
    if r.ok:
        log.info(f"deploy: the CodeDeploy agent restarts in {delay:g} s, once no deployment runs ({UNIT}.timer)")
    elif "already" in r.stderr:
        log.info(f"deploy: a restart of the CodeDeploy agent is already scheduled ({UNIT})")
    else:
        log.warning(f"deploy: could not schedule the CodeDeploy agent's restart: {r.stderr.strip()}")


def restart_when_idle(wait: float = IDLE_WAIT, poll: float = POLL) -> bool:
    """`systemctl try-restart` the agent once nothing is deploying; False if that never happened."""
    deadline = time.monotonic() + wait
    announced = False
    while True:
        why = busy()
        if why is None:
            break
        if time.monotonic() >= deadline:
            log.info(f"restart-agent: not restarted, still busy after {wait:.0f} s: {why}")
            return False
        if not announced:
            log.info(f"restart-agent: waiting: {why}")
            announced = True
        time.sleep(poll)
    subp.run(["systemctl", "try-restart", AGENT_UNIT], timeout=600)
    log.info(f"restart-agent: {AGENT_UNIT} restarted (if it was running)")
    return True
