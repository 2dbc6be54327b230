"""Bootstrap's last part, after the steps and outside the host lock (every hook takes it): a host
that serves no release deploys the revision kept on its data volume (deploy/kept.py), through the
same lifecycle and checks as `bingo-host deploy`, so a replacement instance serves the current
release without anyone acting."""

from __future__ import annotations

import logging

from ..deploy import kept

log = logging.getLogger(__name__)

NAME = "release"


def serve_kept(cfg, dry_run: bool = False) -> tuple[str, str]:
    """(status, detail) as a step's line says them: changed, unchanged or (dry run) would change.
    DeployError (or BundleError) when the kept revision cannot be deployed."""
    revision, why = kept.wanted(kept.where(cfg), cfg.app.root)
    if revision is None:
        return "unchanged", why
    # Imported here: lifecycle needs botocore (the signature check): 36 ms (-X importtime)
    # that every other bootstrap would pay.
    from ..deploy import lifecycle

    names = dict(application_name=revision.get("application_name") or lifecycle.DEFAULT_APPLICATION_NAME,
                 group_name=revision.get("deployment_group") or lifecycle.DEFAULT_GROUP_NAME,
                 deploy_cfg=cfg.deploy, app_root=cfg.app.root)
    if dry_run:
        return "would change", lifecycle.dry_run(revision["path"], **names)
    log.info(f"{NAME:<10} {'deploying':<12} {why}")
    deployment_id = lifecycle.deploy(revision["path"], group_id=revision["deployment_group_id"], **names)
    return "changed", (f"deployed the revision kept on the data volume (first deployed as "
                       f"{revision['deployment_id']}) as {deployment_id}")
