"""The commands that keep the data: snapshot, backup, restore-drill, restore and release-volume."""

from __future__ import annotations

import click

from .. import fields
from ..backup import run as backup_run
from ..errors import ConfigError
from ..restore.handover import release_volume as release
from ..restore.run import restore_snapshot
from ..snapshot import listing, run as snapshot_run
from . import DRY_RUN, Options, paths


@click.command()
@DRY_RUN
@click.option("--list", "list_only", is_flag=True, help="List this instance's snapshots.")
@click.option("--socket", "socket_path", type=paths.SOCKET,
              help="MariaDB unix socket (default: the platform's).")
@click.option("--state-file", type=paths.OUT_FILE,
              help="Where the run's result is saved as JSON for `status` "
                   "[default: /var/lib/bingo-host/last-snapshot.json].")
@click.option("--password-file", type=paths.IN_FILE,
              help="The backup database user's password file "
                   "[default: /etc/bingo-host/db-backup-password].")
@click.option("--freeze-timeout", type=click.FloatRange(1, 120), default=25, show_default=True,
              help="Seconds the data mount may stay frozen before the watchdog kills the run "
                   "and thaws it.")
@click.pass_obj
def snapshot(opts: Options, dry_run, list_only, socket_path, state_file, password_file, freeze_timeout):
    """Consistent EBS snapshots of the data volume (snapshots.volumes), then retention."""
    if list_only:
        rows = listing.list_snapshots()
        click.echo(listing.format_table(rows) if rows else "no snapshots of this instance's volumes")
        return
    result = snapshot_run.scheduled(opts.load_config(), dry_run=dry_run, socket_path=socket_path,
                                    state_file=state_file, password_file=password_file,
                                    freeze_timeout=freeze_timeout)
    if result is None:
        click.echo("snapshots.enabled is false in the config: nothing to do")
    elif not dry_run:
        click.echo(f"{len(result.snapshots)} snapshot(s) created, {len(result.deleted)} deleted")


@click.command()
@DRY_RUN
@click.pass_obj
def backup(opts: Options, dry_run):
    """Dump the app database (mariadb-dump --single-transaction, gzip) to S3, then retention
    (backups.keep). Each dump gets a sidecar <key>.json with its sha256 and row counts."""
    if dry_run:
        click.echo(backup_run.plan(opts.load_config(), "backup"))
        return
    backup_run.backup(opts.load_config())


@click.command("restore-drill")
@DRY_RUN
@click.pass_obj
def restore_drill(opts: Options, dry_run):
    """Restore the latest dump into a scratch database, compare its row counts with the dump's
    record, drop it; `status` shows the result."""
    if dry_run:
        click.echo(backup_run.plan(opts.load_config(), "restore-drill"))
        return
    backup_run.drill(opts.load_config())


@click.command()
@click.option("--snapshot", "snapshot_id", metavar="SNAP_ID",
              help="An EBS snapshot of this host's data volume (see `snapshot --list`): the data "
                   "volume is replaced by a volume made from it; the old one is kept.")
@click.option("--dump", "dump_url", metavar="s3://BUCKET/KEY|latest",
              help="A `bingo-host backup` dump: loaded into a new database first, then swapped in "
                   "with one RENAME TABLE, so a failed load changes nothing.")
@click.option("--force", is_flag=True,
              help="With --snapshot: restore a snapshot of another volume than this host's data volume.")
@DRY_RUN
@click.pass_obj
def restore(opts: Options, snapshot_id, dump_url, force, dry_run):
    """Restore from an EBS snapshot (--snapshot: the whole data volume; a run interrupted at any
    point is finished by running it again, any failure puts the old volume back) or from a
    logical dump (--dump: the app database). Either takes the host lock (one run that changes
    the host at a time: a deployment's hook, bootstrap or another restore waits for it) and
    refuses while a deployment is under way; --snapshot takes the snapshot lock too."""
    if bool(snapshot_id) == bool(dump_url):
        raise ConfigError("--snapshot or --dump", "give exactly one: --snapshot SNAP_ID (an EBS "
                                                  "snapshot) or --dump s3://BUCKET/KEY.sql.gz|latest")
    if dump_url:
        if force:
            raise ConfigError("--dump", "--force applies to --snapshot only")
        if dry_run:
            click.echo(backup_run.plan(opts.load_config(), "restore", dump_url))
            return
        backup_run.restore(*opts.load_with_platform(), dump_url)
        return
    fields.snapshot_id(snapshot_id, "--snapshot")
    restore_snapshot(opts.load_config(), snapshot_id, force=force, dry_run=dry_run)


@click.command("release-volume")
@DRY_RUN
@click.pass_obj
def release_volume(opts: Options, dry_run):
    """Hand the data volume over to a replacement instance: stop uWSGI and MariaDB, unmount it
    and detach it from this instance. Attach it to the new instance as the same device; its
    bootstrap adopts it."""
    release(opts.load_config(), dry_run=dry_run)
