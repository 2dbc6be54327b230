"""The `bingo-host` command line: the group, the options every command shares, and the one place
errors become exit codes. Each command (cli/host.py, cli/data.py, cli/deploy.py, cli/hook.py)
parses its options, makes one call into the module that does the work and prints what it returns.

A BingoHostError becomes one line and its exit status (2 bad input, 1 failed), any other error
one line and exit 1 (its traceback with --debug); a command stopped
by SIGTERM or SIGHUP while it could undo its work (ops.cleanup) says so in one line and exits
128 + the signal's number. Progress goes through the loggers (bingo_host.logs), to the journal
too for the commands that change the host.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import click

from .. import __version__
from ..errors import BingoHostError

# The commands that change the host: their log goes to the journal as well.
JOURNALED = frozenset({"bootstrap", "enable-https", "secrets", "restore", "hook", "create-admin", "patch"})

# name: ("module:attribute" under bingo_host.cli, short help for the listing; None: hidden).
# Loaded on use, so `--help` imports no command module: importing all four costs ~450 ms
# (`python -X importtime`); `bench/cli --here` measured --help at ~55 ms (cli.py before: ~64 ms).
# tests/test_cli.py checks each short help against the command's own.
COMMANDS = {
    "allow-older": ("deploy:allow_older", "Let the next deployment install REVISION (its created "
                    "time or manifest sha256, as the refusal prints them) although it is older "
                    "than the serving one; once."),
    "backup": ("data:backup", "Dump the app database (mariadb-dump --single-transaction, gzip) to "
               "S3, then retention (backups.keep)."),
    "bootstrap": ("host:bootstrap", "Converge this host: packages, data volume, swap, MariaDB, app, "
                  "uWSGI, nginx, timers."),
    "bundle": ("deploy:bundle", "Build the CodeDeploy revision: the app, appspec.yml, hooks/, the "
               "bingo-host wheel and a manifest of every file's sha256 (signed with --sign-key)."),
    "config": ("config:config", "Inspect the configuration file."),
    "create-admin": ("host:create_admin", "Make the app's first admin account with a generated "
                     "password, shown once here and kept in /etc/bingo-host/app-admin-password "
                     "(0600 root), never logged. bingo-host turns off the app's own first account "
                     "(admin/changeme, its password in the app's log)."),
    "deploy": ("deploy:deploy", "Deploy a revision (a .zip, .tar.gz or directory) through the "
               "CodeDeploy lifecycle, as the agent would, in the agent's deployment root."),
    "enable-https": ("host:enable_https", "Get a certificate with certbot and serve the site over "
                     "HTTPS (HTTP redirects to it)."),
    "hook": ("hook:hook", "Run CodeDeploy lifecycle EVENT for $DEPLOYMENT_ID (what the bundle's "
             "hooks/ scripts call)."),
    "metrics": ("metrics:metrics", "CloudWatch metrics of this host (what bingo-host-metrics.timer runs)."),
    "patch": ("host:patch", "Apply security updates now, outside any deployment, under a memory "
              "bound; restart what runs replaced code; record whether a reboot is needed (what "
              "bingo-host-patch.timer runs)."),
    "release-volume": ("data:release_volume", "Hand the data volume over to a replacement instance: "
                       "stop uWSGI and MariaDB, unmount it and detach it from this instance."),
    "render": ("host:render", "Write every managed file under OUT, plus manifest.json (path, mode, "
               "owner, reload)."),
    "restart-agent": ("deploy:restart_agent", None),
    "restore": ("data:restore", "Restore from an EBS snapshot (--snapshot: the whole data volume; a "
                "run interrupted at any point is finished by running it again, any failure puts "
                "the old volume back) or from a logical dump (--dump: the app database)."),
    "restore-drill": ("data:restore_drill", "Restore the latest dump into a scratch database, "
                      "compare its row counts with the dump's record, drop it; `status` shows the "
                      "result."),
    "rollback": ("deploy:rollback", "Switch back to the previous release that passed its checks; "
                 "check it through nginx."),
    "secrets": ("host:secrets", "The secrets bingo-host reads from SSM and Secrets Manager."),
    "snapshot": ("data:snapshot", "Consistent EBS snapshots of the data volume (snapshots.volumes), "
                 "then retention."),
    "status": ("status:status", "Is this host healthy, and if not, why? Exit 0 healthy, 1 "
               "degraded, 2 bad config."),
}


@dataclass
class Options:
    config_path: str
    verbose: bool
    debug: bool = False

    def load_config(self, on_host: bool = False):
        """The config file (on_host: with the checks that ask this host's tools, config_file.py)."""
        from ..config_file import load_config  # config, yaml: ~40 ms that --help does not pay

        return load_config(self.config_path, on_host=on_host)

    def load_with_platform(self):
        """(config, its platform's row) for the commands that need both."""
        from ..facts import platforms  # with the config's imports: not on --help's path

        cfg = self.load_config()
        return cfg, platforms.get(cfg.platform)


class LazyGroup(click.Group):
    """click's LazyGroup: a command's module is imported when the command is looked up; the
    listing of `--help` comes from COMMANDS. Errors become exit statuses here (invoke)."""

    def list_commands(self, ctx):
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx, name):
        if name in self.commands or name not in COMMANDS:
            return self.commands.get(name)
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)

    def format_commands(self, ctx, formatter):
        names = [n for n in sorted({*self.commands, *COMMANDS})
                 if n in self.commands and not self.commands[n].hidden
                 or n not in self.commands and COMMANDS[n][1] is not None]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, self.commands[n].get_short_help_str(limit) if n in self.commands
                 else click.Command(n, help=COMMANDS[n][1]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BingoHostError as exc:
            for error in getattr(exc, "errors", [exc]):  # errors.ConfigErrors: one line each
                click.echo(f"bingo-host: error: {error}", err=True)
            ctx.exit(exc.exit_code)
        except BaseException as exc:
            # Only a running ops.cleanup.Cleanup raises Stopped: not importing that module (with
            # signal and threading, ~4 ms) spares every command that never made one.
            cleanup = sys.modules.get("bingo_host.ops.cleanup")
            if cleanup is not None and isinstance(exc, cleanup.Stopped):
                click.echo(f"bingo-host: {exc}", err=True)
                ctx.exit(128 + exc.signum)
            if not isinstance(exc, Exception) or isinstance(exc, CLICK_FLOW) or _debug(ctx):
                raise
            click.echo(f"bingo-host: internal error: {type(exc).__name__}: {exc} "
                       "(--debug shows where)", err=True)
            ctx.exit(1)


def machine_options(command):
    """--memory, --cpus, --instance-type: the machine render and `config check` size 'auto' for,
    when it is not this one (checked by sizing.machine: a bad value is one line, exit 2)."""
    for option in reversed((
            click.option("--memory", metavar="SIZE", help="Size 'auto' for this much memory "
                         "(512M, 1G) [default: this host's]."),
            click.option("--cpus", metavar="N", help="Size 'auto' for N CPUs [default: this host's]."),
            click.option("--instance-type", "instance_type", metavar="TYPE", help="Size 'auto' for "
                         "an EC2 type's memory and CPUs (t3a.nano ... m7g.4xlarge; not with --memory "
                         "or --cpus)."))):
        command = option(command)
    return command


# click's own ways out of a command (usage errors, --help, exit codes): never internal errors.
CLICK_FLOW = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


def _debug(ctx) -> bool:
    return bool(getattr(ctx.obj, "debug", False))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bingo-host")
@click.option("--config", "config_path", default="/etc/bingo-host/config.yaml", show_default=True,
              envvar="BINGO_HOST_CONFIG", help="Configuration file (env BINGO_HOST_CONFIG).")
@click.option("-v", "--verbose", is_flag=True, help="Log every command run.")
@click.option("--debug", is_flag=True, help="On an unexpected error, show the traceback.")
@click.pass_context
def main(ctx, config_path, verbose, debug):
    """Build and keep a production music bingo host: nginx, uWSGI, MariaDB on its own volume."""
    from .. import logs  # logs and logging: ~4 ms that --help does not pay

    logs.install(verbose=verbose, journal=ctx.invoked_subcommand in JOURNALED)
    ctx.obj = Options(config_path, verbose, debug)

