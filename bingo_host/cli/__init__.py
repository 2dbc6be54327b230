"""The `bingo-host` command line: the group, the options every command shares, and the one place
errors become exit codes. Each command (cli/bootstrap.py, cli/host.py, cli/data.py, cli/deploy.py, ...)
parses its options, makes one call into the module that does the work and prints what it returns.

A BingoHostError becomes one line and its exit status (2 bad input, 1 failed); a usage error
(cli/paths.py checks every path given) one line and exit 2; an OSError the path and the reason,
exit 1; any other error one line and exit 1 (a traceback with --debug); a command stopped
by SIGTERM or SIGHUP while it could undo its work (ops.cleanup) says so in one line and exits
128 + the signal's number. Progress goes through the loggers (bingo_host.logs), to the journal
too for the commands that change the host.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

import click

from .. import __version__
from ..errors import BingoHostError
from .paths import ConfigPath

# The commands that change the host: their log goes to the journal as well (fields COMMAND,
# LOGGER, STEP and DEPLOYMENT_ID for a hook, and a last entry with the run's OUTCOME).
JOURNALED = frozenset({"allow-older", "backup", "bootstrap", "create-admin", "deploy", "enable-https",
                       "hook", "launch-signal", "patch", "release-volume", "resize", "restore", "restore-drill",
                       "rollback", "secrets", "snapshot"})

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
    "bootstrap": ("bootstrap:bootstrap", "Converge this host: packages, data volume, swap, MariaDB, app, "
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
    "launch-signal": ("launch:launch_signal_command", "Arm this instance's signal to its Auto "
                      "Scaling group: SUCCESS once its launch deployment passed ValidateService, "
                      "FAILURE when a hook of it fails; SUCCESS now when the deployment group has "
                      "no successful deployment yet (nothing will be deployed)."),
    "metrics": ("metrics:metrics", "CloudWatch metrics of this host (what bingo-host-metrics.timer runs)."),
    "patch": ("host:patch", "Apply security updates now, outside any deployment, under a memory "
              "bound; restart what runs replaced code; record whether a reboot is needed (what "
              "bingo-host-patch.timer runs)."),
    "release-volume": ("data:release_volume", "Hand the data volume over to a replacement instance: "
                       "stop uWSGI and MariaDB, unmount it and detach it from this instance."),
    "render": ("host:render", "Write every managed file under OUT, plus manifest.json (path, mode, "
               "owner, reload)."),
    "restart-agent": ("deploy:restart_agent", None),
    "resize": ("resize:resize", "Run bootstrap when this host's memory or CPUs are not what the last "
               "bootstrap sized it for (what bingo-host-resize.service runs at boot)."),
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

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # the group's own options (--config)
            raise OneLine.of(exc) from None

    def invoke(self, ctx):
        """The command, then (for one that changes the host) its outcome in the journal."""
        try:
            rv = self._invoke(ctx)
        except click.exceptions.Exit as exc:
            _journal_outcome(ctx, exc.exit_code)
            raise
        except SystemExit as exc:
            _journal_outcome(ctx, exc.code if isinstance(exc.code, int) else 1)
            raise
        except click.UsageError as exc:
            _journal_outcome(ctx, 2, exc.format_message())
            raise
        except BaseException as exc:
            _journal_outcome(ctx, 1, f"{type(exc).__name__}: {exc}")
            raise
        _journal_outcome(ctx, 0)
        return rv

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BingoHostError as exc:
            for error in getattr(exc, "errors", [exc]):  # errors.ConfigErrors: one line each
                _error(ctx, f"bingo-host: error: {error}")
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # a command's options and arguments, an unknown command
            raise OneLine.of(exc) from None
        except (OSError, UnicodeDecodeError) as exc:
            if _debug(ctx):
                raise
            _error(ctx, f"bingo-host: error: {_one_line(exc)}")
            ctx.exit(1)
        except BaseException as exc:
            # Only a running ops.cleanup.Cleanup raises Stopped: not importing that module (with
            # signal and threading, ~4 ms) spares every command that never made one.
            cleanup = sys.modules.get("bingo_host.ops.cleanup")
            if cleanup is not None and isinstance(exc, cleanup.Stopped):
                _error(ctx, f"bingo-host: {exc}")
                ctx.exit(128 + exc.signum)
            if not isinstance(exc, Exception) or isinstance(exc, CLICK_FLOW) or _debug(ctx):
                raise
            _error(ctx, f"bingo-host: internal error: {type(exc).__name__}: {exc} "
                        "(--debug shows where)")
            ctx.exit(1)


def _error(ctx, line: str) -> None:
    """The one line on stderr; the journal's outcome entry repeats it."""
    click.echo(line, err=True)
    ctx.meta[ERROR_LINE] = line.removeprefix("bingo-host: ").removeprefix("error: ")


ERROR_LINE = "bingo_host.error"
OUTCOMES = {0: "ok", 1: "failed", 2: "refused"}  # else: stopped by a signal (128 + n)


def _journal_outcome(ctx, status: int, error: str | None = None) -> None:
    """The last journal entry of a run that changes the host: OUTCOME, EXIT_STATUS, the error."""
    logs = sys.modules.get("bingo_host.logs")
    if ctx.invoked_subcommand not in JOURNALED or logs is None:
        return
    outcome = OUTCOMES.get(status, "stopped")
    error = error or ctx.meta.get(ERROR_LINE)
    logs.outcome(f"{ctx.invoked_subcommand}: {outcome}" + (f": {error}" if error and status else ""),
                 OUTCOME=outcome, EXIT_STATUS=str(status))


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


class OneLine(click.UsageError):
    """A usage error as one line naming the option and the reason, exit 2 (click's own shows
    the usage and a blank line first)."""

    @classmethod
    def of(cls, exc: click.UsageError) -> click.UsageError:
        if isinstance(exc, cls) or type(exc).__name__ == "NoArgsIsHelpError":  # that one is --help
            return exc
        if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) \
                and exc.param is not None:
            return cls(f"{exc.param.get_error_hint(exc.ctx).replace(chr(39), '')}: {exc.message}", exc.ctx)
        path = exc.ctx.command_path if exc.ctx else "bingo-host"
        return cls(f"{exc.format_message().rstrip('.')} (see '{path} --help')", exc.ctx)

    def show(self, file=None) -> None:
        click.echo(f"bingo-host: error: {self.format_message()}", err=True)


def _one_line(exc: OSError | UnicodeDecodeError) -> str:
    """The path and the reason, as `ls` would say them: `/root/x/out: Permission denied`."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start}; --debug shows where)"
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return f"{reason} ({type(exc).__name__}; --debug shows where)"
    where = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {reason}"


def _debug(ctx) -> bool:
    return bool(getattr(ctx.obj, "debug", False))


def _dry_run_moved(ctx, param, value):
    """`bingo-host --dry-run CMD` (before 0.x): refused, saying where it goes now; never ignored,
    which would run CMD for real."""
    if value:
        raise click.BadParameter("goes after the command now: bingo-host COMMAND --dry-run",
                                 ctx, param)


# --dry-run of every command that changes the host: one meaning everywhere (tests/test_cli.py).
DRY_RUN = click.option("--dry-run", is_flag=True,
                       help="Say what would change and change nothing (exit 0 unless it would fail).")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bingo-host")
@click.option("--config", "config_path", type=ConfigPath(), default="/etc/bingo-host/config.yaml",
              show_default=True,
              envvar="BINGO_HOST_CONFIG", help="Configuration file (env BINGO_HOST_CONFIG).")
@click.option("-v", "--verbose", is_flag=True, help="Log every command run.")
@click.option("--debug", is_flag=True, help="On an unexpected error, show the traceback.")
@click.option("--dry-run", is_flag=True, hidden=True, expose_value=False, callback=_dry_run_moved)
@click.pass_context
def main(ctx, config_path, verbose, debug):
    """Build and keep a production music bingo host: nginx, uWSGI, MariaDB on its own volume."""
    from .. import logs  # logs and logging: ~4 ms that --help does not pay

    logs.install(verbose=verbose, journal=ctx.invoked_subcommand in JOURNALED)
    logs.set_fields(COMMAND=ctx.invoked_subcommand)
    ctx.obj = Options(config_path, verbose, debug)

