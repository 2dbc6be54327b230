"""The commands that keep the host beside bootstrap: render, enable-https, secrets refresh,
create-admin and patch."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import admin_account, https, layout, patches
from ..converge import refresh
from ..render_dir import render_to
from ..resolve import app_user
from ..sizing import machine
from . import DRY_RUN, Options, machine_options, paths


@click.command()
@click.option("--out", "out_dir", required=True, type=paths.OUT_DIR,
              help="Directory to write the files under, at their absolute paths.")
@click.option("--platform", "platform_name", type=click.Choice(["amzn2023", "debian12"]),
              help="Render for this platform instead of the config's (default: detect).")
@machine_options
@DRY_RUN
@click.pass_obj
def render(opts: Options, out_dir: Path, platform_name, memory, cpus, instance_type, dry_run):
    """Write every managed file under OUT, plus manifest.json (path, mode, owner, reload).

    OUT is new, empty or an earlier render (it has manifest.json); the files the earlier
    render's manifest listed and this one does not are removed. Nothing below OUT is followed
    if it is a link: a render run as root must not write through a link someone planted there
    into the live files it mirrors.
    """
    mem_bytes, cpu_count = machine(memory, cpus, instance_type)
    result = render_to(opts.load_config(on_host=True), Path(out_dir), platform_name, dry_run=dry_run,
                       mem_bytes=mem_bytes, cpus=cpu_count)
    for diff in result.diffs:
        click.echo(diff, nl=False)
    for path in result.removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {path} (not in this render)")
    verb = "would write" if dry_run else "rendered"
    click.echo(f"{verb} {result.count} files for {result.platform} under {out_dir}")


@click.command("enable-https")
@click.option("--domain", metavar="D", help="The site's DNS name [default: https.domain].")
@click.option("--email", metavar="E", help="For expiry and account notices [default: https.email].")
@click.option("--no-email", is_flag=True, help="Register without an e-mail address.")
@click.option("--server", metavar="URL", help="ACME directory URL [default: Let's Encrypt].")
@click.option("--staging", is_flag=True, help="Use Let's Encrypt's staging server (untrusted test certificates).")
@DRY_RUN
@click.pass_obj
def enable_https(opts: Options, domain, email, no_email, server, staging, dry_run):
    """Get a certificate with certbot and serve the site over HTTPS (HTTP redirects to it).

    certbot only proves control of the domain (`certonly --nginx`); bingo-host renders nginx's
    TLS server itself, and `bootstrap` keeps it. certbot runs with this command's environment
    (e.g. REQUESTS_CA_BUNDLE for a private ACME server). A second run changes nothing.
    """
    cfg, platform = opts.load_with_platform()
    req = https.validate(cfg, domain, email, no_email, server, staging)
    sys.exit(https.enable(cfg, platform, req, dry_run=dry_run))


@click.group("secrets")
def secrets():
    """The secrets bingo-host reads from SSM and Secrets Manager."""


@secrets.command("refresh")
@DRY_RUN
@click.pass_obj
def secrets_refresh(opts: Options, dry_run):
    """Read every ssm:/secretsmanager: secret again; if one rotated, give the app's database user
    the new password (the old one stays valid), rewrite bingo.ini and reload uWSGI's workers one
    at a time. Nothing changes when nothing rotated. The hourly timer runs it."""
    sys.exit(refresh.refresh_secrets(opts.load_config(), dry_run=dry_run))


@click.command("create-admin")
@click.option("--username", default="admin", show_default=True, help="The app account to make.")
@click.option("--reset", is_flag=True, help="The account exists: give it a new password.")
@DRY_RUN
@click.pass_obj
def create_admin(opts: Options, username, reset, dry_run):
    """Make the app's first admin account with a generated password, shown once here and kept in
    /etc/bingo-host/app-admin-password (0600 root), never logged. bingo-host turns off the app's
    own first account (admin/changeme, its password in the app's log)."""
    cfg = opts.load_config()
    if dry_run:
        click.echo(admin_account.create(cfg, app_user(cfg), username=username, reset=reset, dry_run=True))
        return
    password = admin_account.create(cfg, app_user(cfg), username=username, reset=reset)
    click.echo(f"app account {username!r}: password {password}\n(kept in "
               f"{layout.ADMIN_PASSWORD_FILE}, 0600 root; shown here only)")


@click.command()
@DRY_RUN
@click.pass_obj
def patch(opts: Options, dry_run):
    """Apply security updates now, outside any deployment, under a memory bound; restart what
    runs replaced code; record whether a reboot is needed (what bingo-host-patch.timer runs)."""
    cfg, platform = opts.load_with_platform()
    if dry_run:
        click.echo(patches.plan(cfg, platform))
        return
    result = patches.patch_host(cfg, platform)
    click.echo("patch: done" + ("; REBOOT NEEDED" if result["reboot_required"] else ""))
