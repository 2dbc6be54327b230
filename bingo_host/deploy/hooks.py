"""`bingo-host hook EVENT`: what each CodeDeploy lifecycle event does on this host.

    BeforeInstall    check the revision against its manifest and signature, for this
                     application and deployment group (integrity.py), and that it is not older
                     than the serving one (freshness.py); upgrade bingo-host from the bundle's
                     wheel if it is newer (upgrade.py), take the deploy lock (lock.py),
                     preflight, empty the staging directory
    AfterInstall     build releases/<deployment-id> from staging (venv reused, or built in a
                     systemd scope with low CPU/IO weight); the serving release is not touched
    ApplicationStart switch `current` atomically, chain-reload uWSGI's workers (one at a time, a
                     warm one always serving), wait until every worker serves the new
                     release, else switch back (switch.py); prune old releases
    ValidateService  the index and app.health_path through nginx (facts/http.py: 200 only when the
                     app reaches its database), retried until a deadline; on failure switch
                     back to the previous release and fail. Then (as after any failed hook: no
                     later hook runs) schedule the agent's restart (agent_restart.py)
    ApplicationStop  nothing: the old release keeps serving until ApplicationStart switches

The hooks run under the CodeDeploy agent or `bingo-host deploy`; both unpack the revision where
agent.py says, and the hooks find it only there. `bingo-host rollback` is here too: the same
switch and checks, by hand.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import time
from pathlib import Path

from .. import __version__, layout
from ..context import log_to_journal, make_context
from ..errors import BingoHostError
from ..ops.lock import host_lock
from . import (BundleError, DeployError, agent, agent_restart, appspec, env_seconds, freshness,
               integrity, lock, upgrade)
from .releases import PLACEHOLDER, Paths, current_name, prune, read_record, update_record
from .switch import activate, switch_with_fallback

MIN_FREE_APP_MIB = 400  # a new virtualenv plus a release
MIN_FREE_ROOT_MIB = 100
VALIDATE_TIMEOUT = 60.0  # $BINGO_HOST_VALIDATE_TIMEOUT overrides


# -- health through nginx --

def wait_until_healthy(ctx, echo=print) -> None:
    """The static index and the health check through nginx (facts/http.py's rule: 200 for both),
    retried until the deadline."""
    from ..facts import http

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
            echo(f"validate: / and {ctx.cfg.app.health_path} answered 200 through nginx "
                 f"({answer.url}; attempt {attempt})")
            return
        if time.monotonic() >= deadline:
            raise DeployError(f"health check through nginx failed for {deadline_s:.0f} s: {failed}")
        time.sleep(1)


# -- the events --

def bundle_source(env) -> dict:
    if env.get("BUNDLE_BUCKET"):
        return {"type": "s3", "bucket": env.get("BUNDLE_BUCKET"), "key": env.get("BUNDLE_KEY"),
                "version": env.get("BUNDLE_VERSION"), "etag": env.get("BUNDLE_ETAG")}
    if env.get("BINGO_HOST_BUNDLE"):
        return {"type": "file", "path": env.get("BINGO_HOST_BUNDLE"),
                "sha256": env.get("BINGO_HOST_BUNDLE_SHA256")}
    return {"type": "unknown"}


def preflight(ctx, archive: str) -> None:
    cfg = ctx.cfg
    paths = Paths(cfg.app.root)
    missing = [p for p in (paths.releases, paths.shared_ini, f"{layout.UWSGI_VENV}/bin/python",
                           layout.BUILD_WORK)
               if not os.path.exists(p)]
    if missing or not os.path.lexists(paths.current):
        raise DeployError(f"this host is not bootstrapped ({', '.join(missing) or paths.current} "
                          "missing): run `bingo-host bootstrap` first")
    for path, need in ((cfg.app.root, MIN_FREE_APP_MIB), ("/", MIN_FREE_ROOT_MIB)):
        free = shutil.disk_usage(path).free // (1024 * 1024)
        if free < need:
            raise DeployError(f"only {free} MiB free on the file system of {path}; a deployment needs "
                              f"{need} MiB (remove old releases or grow the volume)")
    spec = appspec.load(Path(archive))
    wrong = [m.destination for m in spec.files if m.destination != paths.staging]
    if wrong:
        raise BundleError(f"appspec.yml installs files to {', '.join(wrong)}, but this host's "
                          f"staging directory is {paths.staging} (app.root {cfg.app.root})")


def before_install(ctx, env, echo, revision: dict | None = None) -> None:
    """revision: what integrity.verify found (kept in the deploy record, then the release's)."""
    deployment_id = env["DEPLOYMENT_ID"]
    why = lock.blocker(lock.load(), deployment_id, env_seconds("BINGO_HOST_DEPLOY_STALE_AFTER",
                                                               lock.STALE_AFTER))
    if why:
        raise DeployError(f"another deployment holds this host: {why}")
    old = lock.load()
    if old and old.get("status") == "in-progress" and old.get("deployment_id") != deployment_id:
        echo(f"deploy: taking over from abandoned deployment {old.get('deployment_id')} "
             f"(its {old.get('event')} hook {old.get('event_status')}, never finished)")
    pid, start = lock.process_identity()
    driver = env.get("BINGO_HOST_DEPLOY_DRIVER_PID")
    drv = lock.process_identity(int(driver)) if driver and driver.isdigit() else (None, None)
    record = {
        "schema": 1, "deployment_id": deployment_id,
        "application_name": env.get("APPLICATION_NAME"),
        "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"),
        "deployment_group_id": env.get("DEPLOYMENT_GROUP_ID"),
        "bundle": bundle_source(env), "revision": revision, "status": "in-progress",
        "event": "BeforeInstall", "event_status": "running", "pid": pid, "pid_start": start,
        "driver_pid": drv[0], "driver_start": drv[1], "release": deployment_id,
        "previous": None, "started_at": lock.now(), "finished_at": None, "error": None,
    }
    lock.save(record)
    preflight(ctx, agent.archive_dir(env))
    paths = Paths(ctx.cfg.app.root)
    if os.path.lexists(paths.staging):
        shutil.rmtree(paths.staging)
    os.mkdir(paths.staging, 0o755)
    for leftover in glob.glob(f"{paths.releases}/.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    echo(f"deploy: {deployment_id} holds the deploy lock; {paths.staging} is empty; "
         f"serving {current_name(paths)}")


def after_install(ctx, env, echo) -> None:
    from .releases import build, build_scope

    paths = Paths(ctx.cfg.app.root)
    deployment_id = env["DEPLOYMENT_ID"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", deployment_id):
        raise DeployError(f"deployment id {deployment_id!r} cannot name a release directory")
    record = {"deployment_id": deployment_id, "application_name": env.get("APPLICATION_NAME"),
              "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"), "bundle": bundle_source(env),
              "revision": (lock.load() or {}).get("revision"), "bingo_host_version": __version__}
    build(paths, deployment_id, record, ctx.platform.python, ctx.cfg.app.user, echo,
          scope=build_scope(ctx.facts.mem_bytes))


def application_start(ctx, env, echo) -> None:
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if read_record(paths.release(name)) is None:
        raise DeployError(f"release {paths.release(name)} was not built (did AfterInstall run?)")
    previous = current_name(paths)
    if previous == name:
        st = lock.load()
        previous = st.get("previous") if st else None
    st = lock.load()
    st["previous"] = previous
    lock.save(st)
    try:
        switch_with_fallback(ctx, name, previous, echo)
    except BingoHostError as exc:
        update_record(paths, name, failed={"at": lock.now(), "event": "ApplicationStart",
                                           "reason": str(exc).splitlines()[0]})
        raise
    update_record(paths, name, activated_at=lock.now(), deployed_at=lock.now())
    prune(paths, ctx.cfg.app.keep_releases, {name, previous or ""}, echo)


def validate_service(ctx, env, echo) -> None:
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if current_name(paths) != name:
        raise DeployError(f"{paths.current} points at {current_name(paths)}, not at {name}")
    try:
        wait_until_healthy(ctx, echo=echo)
    except BingoHostError as exc:
        previous = (lock.load() or {}).get("previous")
        update_record(paths, name, failed={"at": lock.now(), "event": "ValidateService",
                                           "reason": str(exc)})
        if not previous:
            raise DeployError(f"{exc}; there is no previous release to switch back to") from None
        echo(f"validate: FAILED ({exc}); switching back to {previous}")
        activate(ctx, previous, echo)
        if previous != PLACEHOLDER:
            wait_until_healthy(ctx, echo=echo)
        raise DeployError(f"ValidateService failed, rolled back to {previous}: {exc}") from None
    update_record(paths, name, validated_at=lock.now())


def application_stop(ctx, env, echo) -> None:
    echo("deploy: nothing to stop: the serving release keeps serving until ApplicationStart")


EVENTS = {
    "ApplicationStop": application_stop,
    "BeforeInstall": before_install,
    "AfterInstall": after_install,
    "ApplicationStart": application_start,
    "ValidateService": validate_service,
}


def run(cfg, event: str, env=None, echo=print) -> None:
    """Run one lifecycle event for the deployment named in env (os.environ by default)."""
    env = dict(os.environ if env is None else env)
    if event not in EVENTS:
        raise BundleError(f"unknown lifecycle event {event!r} (bingo-host handles "
                          f"{', '.join(EVENTS)})")
    if env.get("LIFECYCLE_EVENT") and env["LIFECYCLE_EVENT"] != event:
        raise BundleError(f"called for {event} but LIFECYCLE_EVENT is {env['LIFECYCLE_EVENT']}")
    if event == "ApplicationStop":
        return application_stop(None, env, echo)
    started = time.monotonic()
    if not env.get("DEPLOYMENT_ID"):
        raise BundleError("DEPLOYMENT_ID is not set: hooks run under the CodeDeploy agent "
                          "or `bingo-host deploy`")
    handler = EVENTS[event]
    if event == "BeforeInstall":
        # Before anything from the revision is used, its wheel above all (it would run as root).
        revision = integrity.verify(agent.archive_dir(env), cfg.deploy, echo,
                                    env.get("APPLICATION_NAME"), env.get("DEPLOYMENT_GROUP_NAME"))
        freshness.check(revision, Paths(cfg.app.root), echo, consume=True)
        upgrade.maybe_upgrade(agent.archive_dir(env), echo)
        handler = functools.partial(before_install, revision=revision)
    ctx = make_context(cfg, echo=echo)
    log_to_journal()
    try:
        _run_locked(ctx, event, env, echo, handler)
    except BaseException:
        agent_restart.schedule(echo)  # no later hook runs: the deployment is over here
        raise
    if event == "ValidateService":
        agent_restart.schedule(echo)
    echo(f"hook {event}: done in {time.monotonic() - started:.2f} s "
         f"(+ {_startup_seconds(started):.2f} s starting bingo-host)")


def _startup_seconds(hook_started: float) -> float:
    """How long this process ran before the hook began (the hook script's shell, the interpreter
    and bingo-host's imports), which a deployment pays once per hook: its start time and the
    uptime, both counted from boot (the epoch boot time is whole seconds only)."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    ran = uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    return max(0.0, ran - (time.monotonic() - hook_started))


def _run_locked(ctx, event: str, env, echo, handler) -> None:
    with host_lock(echo=echo):
        if event != "BeforeInstall":
            st = lock.require(env["DEPLOYMENT_ID"])
            pid, start = lock.process_identity()
            st.update(event=event, event_status="running", pid=pid, pid_start=start)
            lock.save(st)
        try:
            handler(ctx, env, echo)
        except BaseException as exc:
            st = lock.load()
            if st and st.get("deployment_id") == env["DEPLOYMENT_ID"]:
                st.update(event_status="failed", status="failed", finished_at=lock.now(),
                          error=str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
                lock.save(st)
            raise
        st = lock.load()
        st["event_status"] = "ok"
        if event == "ValidateService":
            st.update(status="succeeded", finished_at=lock.now())
        lock.save(st)


def rollback(cfg, echo=print) -> str:
    """Switch `current` back to the previous good release, reload, check through nginx; if the
    checks fail, put the release that was serving back."""
    from .releases import previous_good

    ctx = make_context(cfg, echo=echo)
    paths = Paths(ctx.cfg.app.root)
    with host_lock(echo=echo):
        why = lock.blocker(lock.load(), "(rollback)")
        if why:
            raise DeployError(f"a deployment holds this host: {why}")
        now_serving = current_name(paths)
        target = previous_good(paths, now_serving)
        if not target:
            raise DeployError(f"no earlier release that passed its checks to roll back to "
                              f"(serving {now_serving})")
        echo(f"rollback: {now_serving} -> {target}")
        switch_with_fallback(ctx, target, now_serving, echo)
        try:
            wait_until_healthy(ctx, echo=echo)
        except BingoHostError as exc:
            echo(f"rollback: {target} failed its checks; switching back to {now_serving}")
            activate(ctx, now_serving, echo)
            raise DeployError(f"rollback to {target} failed its checks, {now_serving} serves again: "
                              f"{exc}") from None
        update_record(paths, target, activated_at=lock.now(), validated_at=lock.now())
        if now_serving and now_serving != PLACEHOLDER:
            update_record(paths, now_serving, failed={"at": lock.now(), "event": "rollback",
                                                      "reason": "rolled back by hand"})
        return target
