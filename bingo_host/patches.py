"""`bingo-host patch`: security updates, never during a deployment, never starving serving.

Elastic Beanstalk's managed platform updates, for one host: wait until no deployment is in
progress, then hold the host lock so none starts; apply security updates only, the platform's
way, in a systemd scope with low CPU and IO weight and bounded memory (on a nano, dnf's metadata
alone is a few hundred MiB: swap takes the excess, not the OOM killer MariaDB); restart what runs
replaced code, except what a restart would break (dbus, systemd's own, logins); record whether a
reboot is needed (the platform's marker in /run, which `status` reports, and last-patch.json).
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import datetime, timezone

from . import state, subp
from .errors import BingoHostError
from .facts import memory
from .deploy import agent_restart
from .deploy.builder import build_scope
from .ops.lock import host_lock

IDLE_WAIT = 3600.0  # $BINGO_HOST_PATCH_IDLE_WAIT overrides
POLL = 10.0
UPGRADE_TIMEOUT = 2 * 3600
# Restarting these takes the machine's plumbing down with them: left for the next reboot.
NEVER_RESTART = re.compile(r"(dbus(-broker)?|systemd-.*|user@.*|.*getty@.*|getty|"
                           r"amazon-ssm-agent|bingo-host-.*)\.service")
_UNIT = re.compile(r"[A-Za-z0-9@_.-]+\.service")

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def services_to_restart(output: str) -> tuple[list[str], list[str]]:
    """(restart, left for a reboot) from needrestart's batch lines ('NEEDRESTART-SVC: x.service')
    or dnf needs-restarting -s's (one unit a line)."""
    found = []
    for line in output.splitlines():
        name = line.removeprefix("NEEDRESTART-SVC:").strip()
        if _UNIT.fullmatch(name) and name not in found:
            found.append(name)
    return ([s for s in found if not NEVER_RESTART.fullmatch(s)],
            [s for s in found if NEVER_RESTART.fullmatch(s)])


def reboot_required(platform) -> bool:
    return os.path.exists(platform.reboot_marker)


def _when_no_deployment(fn, wait: float, poll: float):
    """fn() under the host lock at a moment no deployment is in progress."""
    deadline = time.monotonic() + wait
    said = False
    while True:
        why = agent_restart.busy()
        if why is None:
            with host_lock():
                why = agent_restart.busy()  # one may have started before we held the lock
                if why is None:
                    return fn()
        if time.monotonic() >= deadline:
            raise BingoHostError(f"patch: not applied, a deployment held the host for {wait:.0f} s: {why}")
        if not said:
            log.info(f"patch: waiting for the deployment to finish: {why}")
            said = True
        time.sleep(poll)


def plan(cfg, platform, mem_bytes: int | None = None) -> str:
    """What a patch run would do (a dry run: nothing is run)."""
    upgrade = [arg.format(release=cfg.patches.release) for arg in platform.patch_upgrade_cmd]
    mem = mem_bytes if mem_bytes is not None else memory.read().usable_bytes
    return (f"patch: would run {' '.join(upgrade)} (memory bound from {mem // 2**20} MiB usable), "
            "restart what runs replaced code and record whether a reboot is needed")


def apply(cfg, platform, mem_bytes: int) -> dict:
    """Steps 2-4 (the caller holds the host, see run): what was done, as recorded."""
    scope = build_scope(mem_bytes, "security updates")
    env = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}  # we restart, later
    if platform.patch_refresh_cmd:
        subp.run([*scope, *platform.patch_refresh_cmd], timeout=1800, env=env)
    upgrade = [arg.format(release=cfg.patches.release) for arg in platform.patch_upgrade_cmd]
    log.info(f"patch: {' '.join(upgrade)}")
    out = subp.run([*scope, *upgrade], timeout=UPGRADE_TIMEOUT, env=env)
    for line in (out.stdout + out.stderr).splitlines()[-20:]:
        log.info(f"patch: | {line}")
    listed = subp.run(list(platform.needs_restart_cmd), timeout=600, env=env).stdout
    restart, left = services_to_restart(listed)
    for unit in restart:
        subp.run(["systemctl", "try-restart", unit], timeout=600)
        log.info(f"patch: restarted {unit} (it ran replaced code)")
    if platform.reboot_check_cmd:  # the tool decides (exit 1: needed); the marker lives in /run
        if subp.run(list(platform.reboot_check_cmd), rcs=(0, 1), timeout=600).returncode == 1:
            os.makedirs(os.path.dirname(platform.reboot_marker), exist_ok=True)
            open(platform.reboot_marker, "a").close()
    reboot = reboot_required(platform)
    if left or reboot:
        log.warning("patch: a reboot is needed to finish: "
                    + (f"{', '.join(left)} not restarted" if left else "the kernel or core libraries were updated"))
    return {"restarted": restart, "restart_deferred": left, "reboot_required": reboot}


def patch_host(cfg, platform, mem_bytes: int | None = None, wait: float | None = None,
               poll: float = POLL) -> dict:
    """One patch run, recorded in state.PATCH_FILE whether it succeeded or not; its memory bound is
    taken from mem_bytes (default: what this host or its cgroup may use)."""
    if mem_bytes is None:
        mem_bytes = memory.read().usable_bytes
    if wait is None:
        wait = float(os.environ.get("BINGO_HOST_PATCH_IDLE_WAIT", IDLE_WAIT))
    record = {"started_at": now(), "finished_at": None, "ok": False, "error": None,
              "release": cfg.patches.release, "restarted": [], "restart_deferred": [],
              "reboot_required": False}
    try:
        record.update(_when_no_deployment(lambda: apply(cfg, platform, mem_bytes), wait, poll))
        record["ok"] = True
        return record
    except BingoHostError as exc:
        record["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        record["finished_at"] = now()
        state.write_json(state.PATCH_FILE, record)
