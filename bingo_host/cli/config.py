"""`config check`: the effective config, 'auto' resolved for this host or a named platform and
machine (--memory/--cpus, --instance-type)."""

from __future__ import annotations

import json

import click
import yaml

from .. import example_config
from ..resolve import effective
from ..sizing import machine
from . import Options, machine_options, paths


@click.group()
def config():
    """Inspect the configuration file."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the effective config as JSON.")
@click.option("--platform", "platform_name", type=click.Choice(["amzn2023", "debian12"]),
              help="Resolve 'auto' values for this platform (default: this host's, if supported).")
@machine_options
@click.pass_obj
def config_check(opts: Options, as_json, platform_name, memory, cpus, instance_type):
    """Validate the config (every error at once) and print it with defaults filled in and 'auto'
    resolved for this host or the machine given. What it prints reads back as the same config
    (a literal password is masked: put it back, or better name ssm:/secretsmanager:)."""
    mem_bytes, cpu_count = machine(memory, cpus, instance_type)
    data, note = effective(opts.load_config(on_host=True), platform_name, mem_bytes, cpu_count)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"# {opts.config_path}: valid; {note}")
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@config.command("init")
@click.argument("path", required=False, type=paths.NEW_FILE)
@click.pass_obj
def config_init(opts: Options, path):
    """Write the commented example config to PATH [default: --config's,
    /etc/bingo-host/config.yaml], 0600; never over an existing file (exit 1)."""
    written = example_config.write(path or opts.config_path)
    click.echo(f"wrote {written}: every key optional, the defaults shown; edit it, then "
               "`bingo-host config check`")
