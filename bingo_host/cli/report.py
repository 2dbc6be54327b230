"""The commands that only read: `status` and `config check`. Apart from the others, so that
`status` (run by monitoring, often) imports none of the modules that change the host."""

from __future__ import annotations

import json
import sys

import click
import yaml

from .. import status as status_mod
from ..resolve import effective
from . import Options


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (docs/status-schema.json).")
@click.pass_obj
def status(opts: Options, as_json):
    """Is this host healthy, and if not, why? Exit 0 healthy, 1 degraded, 2 bad config."""
    report = status_mod.collect(opts.load_config())
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(status_mod.render_text(report, color=sys.stdout.isatty()), color=sys.stdout.isatty())
    sys.exit(0 if report["verdict"] == "healthy" else 1)


@click.group()
def config():
    """Inspect the configuration file."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the effective config as JSON.")
@click.option("--platform", "platform_name", type=click.Choice(["amzn2023", "debian12"]),
              help="Resolve 'auto' values for this platform (default: this host's, if supported).")
@click.pass_obj
def config_check(opts: Options, as_json, platform_name):
    """Validate the config and print it with defaults filled in and 'auto' resolved for this
    host (secrets masked)."""
    data, note = effective(opts.load_config(), platform_name)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"# {opts.config_path}: valid; {note}")
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
