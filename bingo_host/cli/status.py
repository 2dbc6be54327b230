"""`status`: apart from the other commands, so that it (run by monitoring, often) imports none
of the modules that change the host, nor the resolving of 'auto' that `config check` needs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import status as status_mod
from . import Options

SCHEMA = Path(status_mod.__file__).with_name("schema.json")


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable, as `status --schema` describes (a JSON Schema).")
@click.option("--schema", is_flag=True,
              help=f"Print the JSON Schema of --json's output ({SCHEMA}, installed with the package).")
@click.pass_obj
def status(opts: Options, as_json, schema):
    """Is this host healthy, and if not, why? Exit 0 healthy, 1 degraded, 2 bad config."""
    if schema:
        click.echo(SCHEMA.read_text(), nl=False)
        return
    report = status_mod.collect(opts.load_config())
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(status_mod.render_text(report, color=sys.stdout.isatty()), color=sys.stdout.isatty())
    sys.exit(0 if report["verdict"] == "healthy" else 1)
