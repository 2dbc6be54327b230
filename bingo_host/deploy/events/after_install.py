"""AfterInstall: the release built from staging, beside the serving one."""

from __future__ import annotations

import logging

from ... import __version__, fields
from ...errors import ConfigError
from .. import DeployError, record
from ..builder import build_scope
from ..release_build import build
from ..releases import Paths
from ..switch import prestart

log = logging.getLogger(__name__)


def run(ctx, env) -> None:
    """AfterInstall: build releases/<deployment-id> from what Install copied into staging
    (release_build.build), bingo.ini linked where the app reads it; the production requirements
    installed by the build account with uv (app.requirement_overrides as its overrides) into a
    virtualenv shared by releases whose requirements hash the same (virtualenvs.py: no uv runs
    when one exists), the release's own bytecode compiled, in a scope that leaves the
    services their CPU, IO and memory (builder.build_scope). The serving release is not
    touched; a failure fails the deployment. Last, the release starts loading on the uWSGI
    slot that does not serve (switch.prestart), while the agent goes on to ApplicationStart."""
    paths = Paths(ctx.cfg.app.root)
    deployment_id = env["DEPLOYMENT_ID"]
    try:
        fields.deployment_id(deployment_id, "DEPLOYMENT_ID")
    except ConfigError:
        raise DeployError(f"deployment id {deployment_id!r} cannot name a release directory") from None
    made_from = {"deployment_id": deployment_id, "application_name": env.get("APPLICATION_NAME"),
                 "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"),
                 "bundle": record.bundle_source(env),
                 "revision": (record.load() or {}).get("revision"), "bingo_host_version": __version__}
    build(paths, deployment_id, made_from, ctx.platform.python, ctx.cfg.app.user,
          scope=build_scope(ctx.facts.mem_bytes), overrides=ctx.cfg.app.requirement_overrides)
    prestart(ctx, deployment_id)
