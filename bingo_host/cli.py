"""The `bingo-host` command line.

Commands import what they need inside their own body, so `--help` and `status` stay cheap on a
0.5 GiB instance. Every BingoHostError becomes a one-line message and its exit status
(2 for bad input, 1 for a failure); a command stopped by SIGTERM or SIGHUP while it could undo
its work (ops.cleanup) says so in one line and exits 128 + the signal's number. Progress goes
through the loggers (bingo_host.logs), to the journal too for the commands that change the host.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from . import __version__
from .errors import BingoHostError, ConfigError

# The commands that change the host: their log goes to the journal as well.
JOURNALED = frozenset({"bootstrap", "enable-https", "secrets", "restore", "hook", "create-admin", "patch"})


@dataclass
class Options:
    config_path: str
    dry_run: bool
    verbose: bool

    def load_config(self):
        from .config_file import load_config

        return load_config(self.config_path)


class BingoGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BingoHostError as exc:
            click.echo(f"bingo-host: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BaseException as exc:
            # Only a running ops.cleanup.Cleanup raises Stopped: not importing that module (with
            # signal and threading, ~4 ms) spares every command that never made one.
            cleanup = sys.modules.get("bingo_host.ops.cleanup")
            if cleanup is None or not isinstance(exc, cleanup.Stopped):
                raise
            click.echo(f"bingo-host: {exc}", err=True)
            ctx.exit(128 + exc.signum)


@click.group(cls=BingoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bingo-host")
@click.option("--config", "config_path", default="/etc/bingo-host/config.yaml", show_default=True,
              envvar="BINGO_HOST_CONFIG", help="Configuration file (env BINGO_HOST_CONFIG).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Log every command run.")
@click.pass_context
def main(ctx, config_path, dry_run, verbose):
    """Build and keep a production music bingo host: nginx, uWSGI, MariaDB on its own volume."""
    from . import logs  # logs and logging: ~4 ms that --help does not pay

    logs.install(verbose=verbose, journal=ctx.invoked_subcommand in JOURNALED)
    ctx.obj = Options(config_path, dry_run, verbose)


@main.group()
def config():
    """Inspect the configuration file."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the effective config as JSON.")
@click.pass_obj
@click.option("--platform", "platform_name", type=click.Choice(["amzn2023", "debian12"]),
              help="Resolve 'auto' values for this platform (default: this host's, if supported).")
def config_check(opts: Options, as_json, platform_name):
    """Validate the config and print it with defaults filled in and 'auto' resolved for this
    host (secrets masked)."""
    from .facts import platforms
    from .config import to_dict
    from .config_file import check_on_host
    from .resolve import check_app_user, host_facts, resolve

    cfg = opts.load_config()
    check_on_host(cfg)
    try:
        platform = platforms.get(platform_name or cfg.platform)
    except ConfigError:  # validating on a workstation: nothing to resolve 'auto' against
        platform = None
    if platform and not platform_name:  # validating for this very host: its users count too
        check_app_user(cfg, platform)
    note = f"'auto' resolved for {platform.name} on this host" if platform else "'auto' left unresolved"
    data = to_dict(resolve(cfg, platform, host_facts(cfg)) if platform else cfg)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml

        click.echo(f"# {opts.config_path}: valid; {note}")
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the files under, at their absolute paths.")
@click.option("--platform", "platform_name", type=click.Choice(["amzn2023", "debian12"]),
              help="Render for this platform instead of the config's (default: detect).")
@click.pass_obj
def render(opts: Options, out_dir: Path, platform_name):
    """Write every managed file under OUT, plus manifest.json (path, mode, owner, reload).

    OUT is new, empty or an earlier render (it has manifest.json). Nothing below OUT is
    followed if it is a link: a render run as root must not write through a link someone
    planted there into the live files it mirrors.
    """
    from .ops import files
    from .facts import platforms
    from .resolve import host_facts, resolve
    from .config_file import check_on_host
    from .render import render_all

    cfg = opts.load_config()
    check_on_host(cfg)
    platform = platforms.get(platform_name or cfg.platform)
    facts = host_facts(cfg)
    managed = render_all(resolve(cfg, platform, facts), platform, facts)
    _check_render_dir(out_dir)
    if not opts.dry_run:
        out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []

    def ensure(path: str, content: str, mode: int, secret: bool = False):
        relative, name = os.path.split(path.lstrip("/"))
        try:
            dir_fd = files.open_beneath(out_dir, relative, create=not opts.dry_run)
        except FileNotFoundError:  # dry run, nothing rendered there yet
            return files.plan(out_dir / path.lstrip("/"), content, mode, secret=secret)
        except files.NotRegularFile as exc:
            raise ConfigError("--out", f"{out_dir}: {exc.filename} under it is "
                                       f"{exc.strerror}: not following it") from None
        try:
            change = files.plan(name, content, mode, secret=secret, dir_fd=dir_fd)
            if change and not opts.dry_run:
                files.write_atomic(name, content, mode, dir_fd=dir_fd)
            return change
        finally:
            os.close(dir_fd)

    for mf in managed:
        change = ensure(mf.path, mf.content, mf.mode, mf.secret)
        if change and opts.dry_run:
            click.echo(change.diff, nl=False)
        manifest.append({"path": mf.path, "mode": f"{mf.mode:04o}", "owner": mf.owner, "group": mf.group,
                         "on_change": mf.on_change, "template": mf.template})
    text = json.dumps({"platform": platform.name, "files": manifest}, indent=2) + "\n"
    ensure("manifest.json", text, 0o644)
    verb = "would write" if opts.dry_run else "rendered"
    click.echo(f"{verb} {len(managed)} files for {platform.name} under {out_dir}")


def _check_render_dir(out_dir: Path) -> None:
    """OUT must be no link, and new, empty or an earlier render (a regular manifest.json)."""
    import stat

    try:
        st = os.lstat(out_dir)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError("--out", f"{out_dir} is a symbolic link or not a directory")
    try:
        manifest = os.lstat(out_dir / "manifest.json")
    except FileNotFoundError:
        manifest = None
    with os.scandir(out_dir) as entries:
        empty = next(entries, None) is None
    if not empty and not (manifest and stat.S_ISREG(manifest.st_mode)):
        raise ConfigError("--out", f"{out_dir} is not empty and not an earlier render (no "
                                   "manifest.json): give a new or empty directory")


@main.command()
@click.option("--remove-unknown-db-accounts", is_flag=True,
              help="Drop the MariaDB accounts and roles bingo-host did not create (a reattached "
                   "data volume keeps its old ones); without it they are only reported.")
@click.pass_obj
def bootstrap(opts: Options, remove_unknown_db_accounts):
    """Converge this host: packages, data volume, swap, MariaDB, app, uWSGI, nginx, timers."""
    from .converge import bootstrap as bootstrap_mod

    sys.exit(bootstrap_mod.run(opts.load_config(), dry_run=opts.dry_run,
                               remove_unknown_db_accounts=remove_unknown_db_accounts))


@main.command()
@click.option("--dry-run", "local_dry_run", is_flag=True,
              help="Show which volumes would be snapshotted and which snapshots deleted.")
@click.option("--list", "list_only", is_flag=True, help="List this instance's snapshots.")
@click.option("--socket", "socket_path", metavar="PATH",
              help="MariaDB unix socket (default: the platform's).")
@click.option("--state-file", metavar="PATH",
              help="Where the run's result is saved as JSON for `status` "
                   "[default: /var/lib/bingo-host/last-snapshot.json].")
@click.option("--password-file", metavar="PATH",
              help="The backup database user's password file "
                   "[default: /etc/bingo-host/db-backup-password].")
@click.option("--freeze-timeout", type=click.FloatRange(1, 120), default=25, show_default=True,
              help="Seconds the data mount may stay frozen before the watchdog kills the run "
                   "and thaws it.")
@click.pass_obj
def snapshot(opts: Options, local_dry_run, list_only, socket_path, state_file, password_file,
             freeze_timeout):
    """Consistent EBS snapshots of the data volume (snapshots.volumes), then retention."""
    import dataclasses

    from . import layout, state
    from .facts import platforms
    from .snapshot import listing, run

    if list_only:
        rows = listing.list_snapshots()
        click.echo(listing.format_table(rows) if rows else "no snapshots of this instance's volumes")
        return
    cfg = opts.load_config()
    dry_run = opts.dry_run or local_dry_run
    if not cfg.snapshots.enabled and not dry_run:
        click.echo("snapshots.enabled is false in the config: nothing to do")
        return
    platform = platforms.get(cfg.platform)
    if socket_path:
        platform = dataclasses.replace(platform, mariadb_socket=socket_path)
    result = run.take_snapshots(cfg, platform, dry_run=dry_run,
                                state_file=state_file or state.SNAPSHOT_FILE,
                                password_file=password_file or layout.BACKUP_PASSWORD_FILE,
                                freeze_timeout=freeze_timeout)
    if not dry_run:
        click.echo(f"{len(result.snapshots)} snapshot(s) created, {len(result.deleted)} deleted")


def _backups(opts: Options, command: str):
    """(config, platform) for the backup commands, which need backups.enabled."""
    from .facts import platforms

    _no_dry_run(opts, command)
    cfg = opts.load_config()
    if not cfg.backups.enabled:
        raise ConfigError("backups.enabled", f"is false in the config: `{command}` needs backups.bucket")
    return cfg, platforms.get(cfg.platform)


@main.command()
@click.pass_obj
def backup(opts: Options):
    """Dump the app database (mariadb-dump --single-transaction, gzip) to S3, then retention
    (backups.keep). Each dump gets a sidecar <key>.json with its sha256 and row counts."""
    from .backup import run

    run.backup(*_backups(opts, "backup"))


@main.command("restore-drill")
@click.pass_obj
def restore_drill(opts: Options):
    """Restore the latest dump into a scratch database, compare its row counts with the dump's
    record, drop it; `status` shows the result."""
    from .backup import run

    run.drill(*_backups(opts, "restore-drill"))


@main.command()
@click.option("--snapshot", "snapshot_id", metavar="SNAP_ID",
              help="An EBS snapshot of this host's data volume (see `snapshot --list`): the data "
                   "volume is replaced by a volume made from it; the old one is kept.")
@click.option("--dump", "dump_url", metavar="s3://BUCKET/KEY|latest",
              help="A `bingo-host backup` dump: loaded into a new database first, then swapped in "
                   "with one RENAME TABLE, so a failed load changes nothing.")
@click.option("--force", is_flag=True,
              help="With --snapshot: restore a snapshot of another volume than this host's data volume.")
@click.option("--dry-run", "local_dry_run", is_flag=True, help="With --snapshot: print the plan; change nothing.")
@click.pass_obj
def restore(opts: Options, snapshot_id, dump_url, force, local_dry_run):
    """Restore from an EBS snapshot (--snapshot: the whole data volume; a run interrupted at any
    point is finished by running it again, any failure puts the old volume back) or from a
    logical dump (--dump: the app database). Either takes the deploy lock."""
    if bool(snapshot_id) == bool(dump_url):
        raise ConfigError("--snapshot or --dump", "give exactly one: --snapshot SNAP_ID (an EBS "
                                                  "snapshot) or --dump s3://BUCKET/KEY.sql.gz|latest")
    if dump_url:
        from .backup import run
        from .facts import platforms

        if force or local_dry_run:
            raise ConfigError("--dump", "--force and --dry-run apply to --snapshot only")
        _no_dry_run(opts, "restore --dump")
        cfg = opts.load_config()
        run.restore(cfg, platforms.get(cfg.platform), dump_url)
        return
    import re

    from .restore.run import restore_snapshot

    if not re.fullmatch(r"snap-(?:[0-9a-f]{8}|[0-9a-f]{17})", snapshot_id):
        raise ConfigError("--snapshot", "an EBS snapshot id such as snap-0123456789abcdef0")
    restore_snapshot(opts.load_config(), snapshot_id, force=force,
                     dry_run=opts.dry_run or local_dry_run)


@main.command("release-volume")
@click.option("--dry-run", "local_dry_run", is_flag=True, help="Say what would be done; change nothing.")
@click.pass_obj
def release_volume(opts: Options, local_dry_run):
    """Hand the data volume over to a replacement instance: stop uWSGI and MariaDB, unmount it
    and detach it from this instance. Attach it to the new instance as the same device; its
    bootstrap adopts it."""
    from .restore.handover import release_volume as release

    release(opts.load_config(), dry_run=opts.dry_run or local_dry_run)


@main.command("enable-https")
@click.option("--domain", metavar="D", help="The site's DNS name [default: https.domain].")
@click.option("--email", metavar="E", help="For expiry and account notices [default: https.email].")
@click.option("--no-email", is_flag=True, help="Register without an e-mail address.")
@click.option("--server", metavar="URL", help="ACME directory URL [default: Let's Encrypt].")
@click.option("--staging", is_flag=True, help="Use Let's Encrypt's staging server (untrusted test certificates).")
@click.pass_obj
def enable_https(opts: Options, domain, email, no_email, server, staging):
    """Get a certificate with certbot and serve the site over HTTPS (HTTP redirects to it).

    certbot only proves control of the domain (`certonly --nginx`); bingo-host renders nginx's
    TLS server itself, and `bootstrap` keeps it. certbot runs with this command's environment
    (e.g. REQUESTS_CA_BUNDLE for a private ACME server). A second run changes nothing.
    """
    from . import https
    from .facts import platforms

    cfg = opts.load_config()
    req = https.validate(cfg, domain, email, no_email, server, staging)
    sys.exit(https.enable(cfg, platforms.get(cfg.platform), req, dry_run=opts.dry_run))


@main.group("secrets")
def secrets_group():
    """The secrets bingo-host reads from SSM and Secrets Manager."""


@secrets_group.command("refresh")
@click.pass_obj
def secrets_refresh(opts: Options):
    """Read every ssm:/secretsmanager: secret again; if one rotated, give the app's database user
    the new password (the old one stays valid), rewrite bingo.ini and reload uWSGI's workers one
    at a time. Nothing changes when nothing rotated. The hourly timer runs it."""
    from .converge import refresh

    sys.exit(refresh.run(opts.load_config(), dry_run=opts.dry_run))


@main.command("create-admin")
@click.option("--username", default="admin", show_default=True, help="The app account to make.")
@click.option("--reset", is_flag=True, help="The account exists: give it a new password.")
@click.pass_obj
def create_admin(opts: Options, username, reset):
    """Make the app's first admin account with a generated password, shown once here and kept in
    /etc/bingo-host/app-admin-password (0600 root), never logged. bingo-host turns off the app's
    own first account (admin/changeme, its password in the app's log)."""
    from . import admin_account, layout
    from .resolve import app_user

    _no_dry_run(opts, "create-admin")
    cfg = opts.load_config()
    password = admin_account.create(cfg, app_user(cfg), username=username, reset=reset)
    click.echo(f"app account {username!r}: password {password}\n(kept in "
               f"{layout.ADMIN_PASSWORD_FILE}, 0600 root; shown here only)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (docs/status-schema.json).")
@click.pass_obj
def status(opts: Options, as_json):
    """Is this host healthy, and if not, why? Exit 0 healthy, 1 degraded, 2 bad config."""
    from . import status as status_mod

    report = status_mod.collect(opts.load_config())
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(status_mod.render_text(report, color=sys.stdout.isatty()), color=sys.stdout.isatty())
    sys.exit(0 if report["verdict"] == "healthy" else 1)



def _no_dry_run(opts: Options, command: str) -> None:
    if opts.dry_run:
        raise ConfigError("--dry-run", f"`{command}` has no dry run")


@main.command()
@click.argument("event")
@click.pass_obj
def hook(opts: Options, event):
    """Run CodeDeploy lifecycle EVENT for $DEPLOYMENT_ID (what the bundle's hooks/ scripts call)."""
    from .deploy import hooks

    _no_dry_run(opts, "hook")
    cfg = None if event == "ApplicationStop" else opts.load_config()
    hooks.run_hook(cfg, event)


@main.command("restart-agent", hidden=True)
@click.pass_obj
def restart_agent(opts: Options):
    """Restart the CodeDeploy agent once no deployment runs (what ValidateService schedules)."""
    from .deploy import agent_restart

    _no_dry_run(opts, "restart-agent")
    agent_restart.restart_when_idle()


@main.group()
def metrics():
    """CloudWatch metrics of this host (what bingo-host-metrics.timer runs)."""


@metrics.command("push")
@click.pass_obj
def metrics_push(opts: Options):
    """Put memory, swap and disk use and nginx's 5xx count since the last push into CloudWatch
    (namespace BingoHost, dimension InstanceId)."""
    from . import metrics as metrics_mod

    _no_dry_run(opts, "metrics push")
    metrics_mod.push(opts.load_config())


@main.command()
@click.pass_obj
def patch(opts: Options):
    """Apply security updates now, outside any deployment, under a memory bound; restart what
    runs replaced code; record whether a reboot is needed (what bingo-host-patch.timer runs)."""
    from . import patches
    from .facts import memory, platforms

    _no_dry_run(opts, "patch")
    cfg = opts.load_config()
    result = patches.run(cfg, platforms.get(cfg.platform), memory.read().usable_bytes)
    click.echo("patch: done" + ("; REBOOT NEEDED" if result["reboot_required"] else ""))


@main.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option("--deployment-id", metavar="ID", help="Default: a new random d-XXXXXXXXX.")
@click.option("--application-name", default="music-bingo", show_default=True)
@click.option("--deployment-group", default="LocalFleet", show_default=True,
              help="DEPLOYMENT_GROUP_NAME (codedeploy-local's default).")
@click.option("--deployment-group-id", default="default-local-deployment-group", show_default=True,
              help="DEPLOYMENT_GROUP_ID: the agent's <root_dir>/<id>/ holds this group's deployments "
                   "(codedeploy-local's default).")
@click.option("--allow-older", is_flag=True,
              help="Deploy a signed revision created before the serving one (a deliberate rollback).")
@click.pass_obj
def deploy(opts: Options, bundle, deployment_id, application_name, deployment_group,
           deployment_group_id, allow_older):
    """Deploy a revision (a .zip, .tar.gz or directory) through the CodeDeploy lifecycle, as the
    agent would, in the agent's deployment root. With a config, its manifest and signature
    (deploy.require_signature: signed for --application-name and --deployment-group, and not
    older than the serving revision) are checked before any of its scripts runs."""
    import os
    import re

    from .deploy import lifecycle

    _no_dry_run(opts, "deploy")
    for option, value in (("--deployment-id", deployment_id), ("--deployment-group-id", deployment_group_id)):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", value):
            raise ConfigError(option, "letters, digits, '_' and '-' only")
    cfg = opts.load_config() if os.path.exists(opts.config_path) else None
    lifecycle.deploy(bundle, deployment_id, application_name, deployment_group, deployment_group_id,
                     deploy_cfg=cfg and cfg.deploy, app_root=cfg and cfg.app.root,
                     allow_older=allow_older)


@main.command("allow-older")
@click.argument("revision")
@click.pass_obj
def allow_older(opts: Options, revision):
    """Let the next deployment install REVISION (its created time or manifest sha256, as the
    refusal prints them) although it is older than the serving one; once."""
    from .deploy import freshness

    _no_dry_run(opts, "allow-older")
    freshness.allow(revision)
    click.echo(f"allow-older: the next deployment may install {revision} ({freshness.ALLOW_FILE})")


@main.command()
@click.option("--app", "app_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A music bingo checkout with the client built (client/build/).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The revision to write, e.g. musicbingo-prod.zip.")
@click.option("--format", "fmt", type=click.Choice(["zip", "tgz"]),
              help="zip (what CodePipeline's CodeDeploy action takes) or tgz [default: from --out: "
                   ".tar.gz/.tgz -> tgz, anything else -> zip].")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False),
              help="The bingo-host wheel to ship (default: built from this source tree, or rebuilt "
                   "from this installed copy).")
@click.option("--no-wheel", is_flag=True, help="Ship no bingo-host wheel.")
@click.option("--sign-key", metavar="ARN",
              help="Sign the manifest with this asymmetric KMS key (key or alias ARN; needs kms:Sign "
                   "and kms:DescribeKey): hosts with deploy.require_signature check it.")
@click.option("--application", metavar="NAME",
              help="The CodeDeploy application the signature binds the revision to (with --sign-key).")
@click.option("--deployment-group", metavar="NAME",
              help="The deployment group the signature binds the revision to (with --sign-key).")
def bundle(app_dir, out_file, fmt, wheel, no_wheel, sign_key, application, deployment_group):
    """Build the CodeDeploy revision: the app, appspec.yml, hooks/, the bingo-host wheel and a
    manifest of every file's sha256 (signed with --sign-key)."""
    import tempfile

    from .deploy import bundle as bundle_mod
    from .deploy.wheel import wheel_from_installed
    from .fields import kms_key_arn

    if sign_key is not None:
        kms_key_arn(sign_key, "--sign-key")
    for option, value in (("--application", application), ("--deployment-group", deployment_group)):
        if sign_key is None and value is not None:
            raise ConfigError(option, "binds only a signed revision: give --sign-key too")
        if sign_key is not None and not value:
            raise ConfigError(option, "required with --sign-key (the signature binds the revision "
                                      "to one application and deployment group)")

    fmt = bundle_mod.output_format(out_file, fmt)  # a contradiction is refused before any work
    with tempfile.TemporaryDirectory() as tmp:
        if not wheel and not no_wheel:
            tree = Path(__file__).resolve().parent.parent
            if (tree / "setup.cfg").is_file():
                from . import subp

                subp.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp, str(tree)],
                         timeout=600)
                wheel = next(Path(tmp).glob("bingo_host-*.whl"))
            else:  # an installed copy: its own wheel, rebuilt from what pip installed
                wheel = wheel_from_installed(tmp)
        bundle_mod.build_bundle(app_dir, out_file, None if no_wheel else wheel, fmt=fmt,
                                sign_key=sign_key, binding={"application": application,
                                                            "deployment_group": deployment_group})


@main.command()
@click.pass_obj
def rollback(opts: Options):
    """Switch back to the previous release that passed its checks; check it through nginx."""
    from .deploy import rollback as rollback_mod

    _no_dry_run(opts, "rollback")
    target = rollback_mod.rollback(opts.load_config())
    click.echo(f"rollback: serving {target}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
