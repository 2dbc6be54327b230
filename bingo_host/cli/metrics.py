"""`metrics push`: apart from bootstrap's module, since it stands on boto3 (~130 ms of
`python -X importtime` that a converged bootstrap re-run paid for a command it never ran)."""

from __future__ import annotations

import click

from .. import metrics as metrics_mod
from . import Options


@click.group()
def metrics():
    """CloudWatch metrics of this host (what bingo-host-metrics.timer runs)."""


@metrics.command("push")
@click.pass_obj
def metrics_push(opts: Options):
    """Put memory, swap and disk use and nginx's 5xx count since the last push into CloudWatch
    (namespace BingoHost, dimension InstanceId)."""
    metrics_mod.push(opts.load_config())
