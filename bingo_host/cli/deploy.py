"""The commands of deployments: deploy, rollback, bundle, allow-older, restart-agent (`hook` is
cli/hook.py: the hooks' start-up pays for none of these)."""

from __future__ import annotations

import os

import click

from .. import fields
from ..deploy import agent_restart, freshness, lifecycle, rollback as rollback_mod, wheel
from . import DRY_RUN, Options, paths


@click.command("restart-agent", hidden=True)
def restart_agent():
    """Restart the CodeDeploy agent once no deployment runs (what ValidateService schedules)."""
    agent_restart.restart_when_idle()


@click.command()
@click.argument("bundle", type=paths.UserPath("file", "dir", metavar="BUNDLE"))
@click.option("--deployment-id", metavar="ID", help="Default: a new random d-XXXXXXXXX.")
@click.option("--application-name", default="music-bingo", show_default=True)
@click.option("--deployment-group", default="LocalFleet", show_default=True,
              help="DEPLOYMENT_GROUP_NAME (codedeploy-local's default).")
@click.option("--deployment-group-id", default="default-local-deployment-group", show_default=True,
              help="DEPLOYMENT_GROUP_ID: the agent's <root_dir>/<id>/ holds this group's deployments "
                   "(codedeploy-local's default).")
@click.option("--allow-older", is_flag=True,
              help="Deploy a signed revision created before the serving one (a deliberate rollback).")
@DRY_RUN
@click.pass_obj
def deploy(opts: Options, bundle, deployment_id, application_name, deployment_group,
           deployment_group_id, allow_older, dry_run):
    """Deploy a revision (a .zip, .tar.gz or directory) through the CodeDeploy lifecycle, as the
    agent would, in the agent's deployment root. With a config, its manifest and signature
    (deploy.require_signature: signed for --application-name and --deployment-group, and not
    older than the serving revision) are checked before any of its scripts runs."""
    for option, value in (("--deployment-id", deployment_id), ("--deployment-group-id", deployment_group_id)):
        if value is not None:
            fields.deployment_id(value, option)
    cfg = opts.load_config() if os.path.exists(opts.config_path) else None
    if dry_run:
        click.echo(lifecycle.dry_run(bundle, application_name, deployment_group,
                                     deploy_cfg=cfg and cfg.deploy, app_root=cfg and cfg.app.root,
                                     allow_older=allow_older))
        return
    lifecycle.deploy(bundle, deployment_id, application_name, deployment_group, deployment_group_id,
                     deploy_cfg=cfg and cfg.deploy, app_root=cfg and cfg.app.root,
                     allow_older=allow_older)


@click.command("allow-older")
@click.argument("revision")
@DRY_RUN
def allow_older(revision, dry_run):
    """Let the next deployment install REVISION (its created time or manifest sha256, as the
    refusal prints them) although it is older than the serving one; once."""
    freshness.allow(revision, dry_run=dry_run)
    click.echo(f"allow-older: the next deployment {'would be allowed to' if dry_run else 'may'} "
               f"install {revision} ({freshness.ALLOW_FILE})")


@click.command()
@click.option("--app", "app_dir", required=True, type=paths.IN_DIR,
              help="A music bingo checkout with the client built (client/build/).")
@click.option("--out", "out_file", required=True, type=paths.OUT_FILE,
              help="The revision to write, e.g. musicbingo-prod.zip.")
@click.option("--format", "fmt", type=click.Choice(["zip", "tgz"]),
              help="zip (what CodePipeline's CodeDeploy action takes) or tgz [default: from --out: "
                   ".tar.gz/.tgz -> tgz, anything else -> zip].")
@click.option("--wheel", "wheel_file", type=paths.IN_FILE,
              help="The bingo-host wheel to ship (default: built from this source tree, or rebuilt "
                   "from this installed copy).")
@click.option("--no-wheel", is_flag=True, help="Ship no bingo-host wheel.")
@click.option("--sign-key", metavar="ARN",
              help="Sign the manifest with this asymmetric KMS key (key or alias ARN; needs kms:Sign "
                   "and kms:DescribeKey): hosts with deploy.require_signature check it.")
@click.option("--application", metavar="NAME",
              help="The CodeDeploy application the signature binds the revision to (with --sign-key).")
@click.option("--deployment-group", metavar="NAME",
              help="The deployment group the signature binds the revision to (with --sign-key).")
def bundle(app_dir, out_file, fmt, wheel_file, no_wheel, sign_key, application, deployment_group):
    """Build the CodeDeploy revision: the app, appspec.yml, hooks/, the bingo-host wheel and a
    manifest of every file's sha256 (signed with --sign-key)."""
    wheel.bundle(app_dir, out_file, fmt, wheel_file, no_wheel, sign_key, application, deployment_group)


@click.command()
@DRY_RUN
@click.pass_obj
def rollback(opts: Options, dry_run):
    """Switch back to the previous release that passed its checks; check it through nginx."""
    target = rollback_mod.rollback(opts.load_config(), dry_run=dry_run)
    click.echo(f"rollback: {'would serve' if dry_run else 'serving'} {target}")
