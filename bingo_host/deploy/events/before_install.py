"""BeforeInstall: the revision checked (before anything from it is used), then the deploy lock
taken and the staging directory emptied."""

from __future__ import annotations

import glob
import logging
import os
import shutil
from pathlib import Path

from ... import layout
from .. import (BundleError, DeployError, agent, appspec, env_seconds, freshness, integrity, record,
               slots, upgrade)
from ..releases import Paths, current_name

log = logging.getLogger(__name__)

MIN_FREE_APP_MIB = 400  # a new virtualenv plus a release
MIN_FREE_ROOT_MIB = 100


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


def run(ctx, env, revision: dict | None = None) -> None:
    """BeforeInstall (after check_revision): take the deploy lock, i.e. start this deployment's
    record (refused while another deployment is alive; one whose hook died is taken over),
    preflight (bootstrapped, free space, appspec's destination is our staging directory), stop
    a release slot that does not serve (slots.stop_idle), empty the staging directory.
    revision: what check_revision found, kept in the record, then the release's."""
    deployment_id = env["DEPLOYMENT_ID"]
    old = record.load()
    why = record.blocker(old, deployment_id, env_seconds("BINGO_HOST_DEPLOY_STALE_AFTER",
                                                         record.STALE_AFTER))
    if why:
        raise DeployError(f"another deployment holds this host: {why}")
    if old and old.get("status") == "in-progress" and old.get("deployment_id") != deployment_id:
        log.info(f"deploy: taking over from abandoned deployment {old.get('deployment_id')} "
                 f"(its {old.get('event')} hook {old.get('event_status')}, never finished)")
    record.save(record.new(deployment_id, env, record.bundle_source(env), revision))
    preflight(ctx, agent.archive_dir(env))
    slots.stop_idle(ctx)
    paths = Paths(ctx.cfg.app.root)
    if os.path.lexists(paths.staging):
        shutil.rmtree(paths.staging)
    os.mkdir(paths.staging, 0o755)
    for leftover in glob.glob(f"{paths.releases}/.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    log.info(f"deploy: {deployment_id} holds the deploy lock; {paths.staging} is empty; "
             f"serving {current_name(paths)}")
