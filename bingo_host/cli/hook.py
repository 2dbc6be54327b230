"""`bingo-host hook EVENT`: what the bundle's hooks/ scripts run, four times a deployment, so its
module imports deploy.hooks and nothing of the other commands (tests/test_cli.py checks what the
hook's start-up loads; bench/cli times it). An instance's launch deployment sends the signal
`launch-signal` armed (launch_signal.py), once."""

from __future__ import annotations

import os

import click

from .. import launch_signal, logs
from ..deploy import hooks
from . import Options


@click.command()
@click.argument("event")
@click.pass_obj
def hook(opts: Options, event):
    """Run CodeDeploy lifecycle EVENT for $DEPLOYMENT_ID (what the bundle's hooks/ scripts call)."""
    logs.set_fields(STEP=event, DEPLOYMENT_ID=os.environ.get("DEPLOYMENT_ID"))
    try:
        hooks.run_hook(None if event == "ApplicationStop" else opts.load_config(), event)
    except BaseException:  # the agent's timeout (SIGTERM) too: the launch deployment failed
        launch_signal.deliver("FAILURE")
        raise
    if event == "ValidateService":
        launch_signal.deliver("SUCCESS")  # an instance's launch deployment: it serves
