"""resize: what bingo-host-resize.service runs at every boot. Its own module, loading nothing of
bootstrap's steps unless the host's memory or CPUs changed (an unchanged boot pays a read)."""

from __future__ import annotations

import sys

import click

from ..converge import resize as resize_mod
from . import DRY_RUN, Options


@click.command()
@DRY_RUN
@click.pass_obj
def resize(opts: Options, dry_run):
    """Run bootstrap when this host's memory or CPUs are not what the last bootstrap sized it for
    (what bingo-host-resize.service runs at boot)."""
    sys.exit(resize_mod.resize(opts.load_config, dry_run=dry_run))
