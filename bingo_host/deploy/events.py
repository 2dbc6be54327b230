"""What each CodeDeploy lifecycle event does on this host: one function per event, its docstring
the one description of it. hooks.py runs them (`bingo-host hook EVENT`) under the host lock,
keeping the deployment record (record.py). They find the unpacked revision where agent.py says,
whether the CodeDeploy agent or `bingo-host deploy` runs them.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from pathlib import Path

from .. import __version__, fields, layout
from ..errors import BingoHostError, ConfigError
from . import (BundleError, DeployError, agent, appspec, env_seconds, freshness, integrity, record,
               upgrade)
from .health import wait_healthy
from .releases import (PLACEHOLDER, Paths, build, build_scope, current_name, prune, read_record,
                       update_record)
from .switch import activate, switch_with_fallback

log = logging.getLogger(__name__)

MIN_FREE_APP_MIB = 400  # a new virtualenv plus a release
MIN_FREE_ROOT_MIB = 100


def bundle_source(env) -> dict:
    if env.get("BUNDLE_BUCKET"):
        return {"type": "s3", "bucket": env.get("BUNDLE_BUCKET"), "key": env.get("BUNDLE_KEY"),
                "version": env.get("BUNDLE_VERSION"), "etag": env.get("BUNDLE_ETAG")}
    if env.get("BINGO_HOST_BUNDLE"):
        return {"type": "file", "path": env.get("BINGO_HOST_BUNDLE"),
                "sha256": env.get("BINGO_HOST_BUNDLE_SHA256")}
    return {"type": "unknown"}


def check_revision(cfg, env) -> dict:
    """BeforeInstall's first half, before the deploy lock and before anything from the revision
    is used (its wheel above all: it would run as root): the revision against its manifest and
    signature for this application and deployment group (integrity.py), not older than the
    serving one (freshness.py); then bingo-host upgraded from the revision's wheel if that is
    newer (upgrade.py; a bad wheel fails the deployment and leaves the old toolkit). What
    integrity.verify found."""
    revision = integrity.verify(agent.archive_dir(env), cfg.deploy, env.get("APPLICATION_NAME"),
                                env.get("DEPLOYMENT_GROUP_NAME"))
    freshness.check(revision, Paths(cfg.app.root), consume=True)
    upgrade.maybe_upgrade(agent.archive_dir(env))
    return revision


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


def before_install(ctx, env, revision: dict | None = None) -> None:
    """BeforeInstall (after check_revision): take the deploy lock, i.e. start this deployment's
    record (refused while another deployment is alive; one whose hook died is taken over),
    preflight (bootstrapped, free space, appspec's destination is our staging directory), empty
    the staging directory. revision: what check_revision found, kept in the record, then the
    release's."""
    deployment_id = env["DEPLOYMENT_ID"]
    old = record.load()
    why = record.blocker(old, deployment_id, env_seconds("BINGO_HOST_DEPLOY_STALE_AFTER",
                                                         record.STALE_AFTER))
    if why:
        raise DeployError(f"another deployment holds this host: {why}")
    if old and old.get("status") == "in-progress" and old.get("deployment_id") != deployment_id:
        log.info(f"deploy: taking over from abandoned deployment {old.get('deployment_id')} "
                 f"(its {old.get('event')} hook {old.get('event_status')}, never finished)")
    record.save(record.new(deployment_id, env, bundle_source(env), revision))
    preflight(ctx, agent.archive_dir(env))
    paths = Paths(ctx.cfg.app.root)
    if os.path.lexists(paths.staging):
        shutil.rmtree(paths.staging)
    os.mkdir(paths.staging, 0o755)
    for leftover in glob.glob(f"{paths.releases}/.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    log.info(f"deploy: {deployment_id} holds the deploy lock; {paths.staging} is empty; "
             f"serving {current_name(paths)}")


def after_install(ctx, env) -> None:
    """AfterInstall: build releases/<deployment-id> from what Install copied into staging
    (releases.build), bingo.ini linked where the app reads it; the production requirements
    installed by the build account with uv (app.requirement_overrides as its overrides) into a
    virtualenv shared by releases whose requirements hash the same (virtualenvs.py: no uv runs
    when one exists), the release's own bytecode compiled, in a scope that leaves the
    services their CPU, IO and memory (releases.build_scope). The serving release is not
    touched; a failure fails the deployment."""
    paths = Paths(ctx.cfg.app.root)
    deployment_id = env["DEPLOYMENT_ID"]
    try:
        fields.deployment_id(deployment_id, "DEPLOYMENT_ID")
    except ConfigError:
        raise DeployError(f"deployment id {deployment_id!r} cannot name a release directory") from None
    made_from = {"deployment_id": deployment_id, "application_name": env.get("APPLICATION_NAME"),
                 "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"), "bundle": bundle_source(env),
                 "revision": (record.load() or {}).get("revision"), "bingo_host_version": __version__}
    build(paths, deployment_id, made_from, ctx.platform.python, ctx.cfg.app.user,
          scope=build_scope(ctx.facts.mem_bytes), overrides=ctx.cfg.app.requirement_overrides)


def application_start(ctx, env) -> None:
    """ApplicationStart: switch `current` to the new release atomically, chain-reload uWSGI's
    workers (one at a time, a warm one always serving) and wait until every worker serves it,
    else switch back (switch.py); then prune old releases."""
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if read_record(paths.release(name)) is None:
        raise DeployError(f"release {paths.release(name)} was not built (did AfterInstall run?)")
    st = record.load()
    previous = current_name(paths)
    if previous == name:
        previous = st.get("previous") if st else None
    st["previous"] = previous
    record.save(st)
    try:
        switch_with_fallback(ctx, name, previous)
    except BingoHostError as exc:
        update_record(paths, name, failed={"at": record.now(), "event": "ApplicationStart",
                                           "reason": str(exc).splitlines()[0]})
        raise
    update_record(paths, name, activated_at=record.now(), deployed_at=record.now())
    prune(paths, ctx.cfg.app.keep_releases, {name, previous or ""})


def validate_service(ctx, env) -> None:
    """ValidateService: the index and app.health_path through nginx (health.py; the health
    check answers 200 only when the app reaches its database), retried until a deadline; on
    failure switch back to the previous release and fail. After it (as after any failed hook:
    no later hook runs) the agent's restart is scheduled (agent_restart.py)."""
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if current_name(paths) != name:
        raise DeployError(f"{paths.current} points at {current_name(paths)}, not at {name}")
    try:
        wait_healthy(ctx)
    except BingoHostError as exc:
        previous = (record.load() or {}).get("previous")
        update_record(paths, name, failed={"at": record.now(), "event": "ValidateService",
                                           "reason": str(exc)})
        if not previous:
            raise DeployError(f"{exc}; there is no previous release to switch back to") from None
        log.info(f"validate: FAILED ({exc}); switching back to {previous}")
        activate(ctx, previous)
        if previous != PLACEHOLDER:
            wait_healthy(ctx)
        raise DeployError(f"ValidateService failed, rolled back to {previous}: {exc}") from None
    update_record(paths, name, validated_at=record.now())


def application_stop(ctx, env) -> None:
    """ApplicationStop: nothing, so appspec.yml names no script for it: the old release keeps
    serving until ApplicationStart switches."""
    log.info("deploy: nothing to stop: the serving release keeps serving until ApplicationStart")


EVENTS = {
    "ApplicationStop": application_stop,
    "BeforeInstall": before_install,
    "AfterInstall": after_install,
    "ApplicationStart": application_start,
    "ValidateService": validate_service,
}
