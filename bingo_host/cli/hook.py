"""`bingo-host hook EVENT`: what the bundle's hooks/ scripts run, four times a deployment, so its
module imports deploy.hooks and nothing of the other commands (tests/test_cli.py checks what the
hook's start-up loads; bench/cli times it)."""

from __future__ import annotations

import os

import click

from .. import logs
from ..deploy import hooks
from . import Options


@click.command()
@click.argument("event")
@click.pass_obj
def hook(opts: Options, event):
    """Run CodeDeploy lifecycle EVENT for $DEPLOYMENT_ID (what the bundle's hooks/ scripts call)."""
    logs.set_fields(STEP=event, DEPLOYMENT_ID=os.environ.get("DEPLOYMENT_ID"))
    hooks.run_hook(None if event == "ApplicationStop" else opts.load_config(), event)
