"""`bingo-host launch-signal`: what ha.yaml's cfn-init runs before the CodeDeploy agent exists."""

from __future__ import annotations

import click

from .. import launch_signal
from ..facts import imds
from . import DRY_RUN, Options


@click.command("launch-signal")
@DRY_RUN
@click.option("--stack", required=True, help="the stack's name (CloudFormation's StackName)")
@click.option("--resource", required=True, help="the Auto Scaling group's logical id")
@click.option("--region", required=True)
@click.option("--application", required=True, help="the CodeDeploy application")
@click.option("--deployment-group", "group", required=True, help="its deployment group")
@click.pass_obj
def launch_signal_command(opts: Options, dry_run, stack, resource, region, application, group):
    """Arm this instance's signal to its Auto Scaling group: SUCCESS once its launch deployment
    passed ValidateService, FAILURE when a hook of it fails; SUCCESS now when the deployment
    group has no successful deployment yet (nothing will be deployed).

    Once per instance: a signal already armed or sent is left as it is."""
    click.echo(launch_signal.arm(stack, resource, region, application, group, imds.identity().instance_id,
                                 dry_run=dry_run))
