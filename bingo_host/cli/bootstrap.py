"""bootstrap: the command cfn-init and every converge run. Its own module so that it loads only
the converge steps, not what the other host commands need (certbot's, the admin account's)."""

from __future__ import annotations

import sys

import click

from .. import install_floor
from ..converge import bootstrap as bootstrap_mod
from . import DRY_RUN, Options


@click.command()
@click.option("--remove-unknown-db-accounts", is_flag=True,
              help="Drop the MariaDB accounts and roles bingo-host did not create (a reattached "
                   "data volume keeps its old ones); without it they are only reported.")
@DRY_RUN
@click.pass_obj
def bootstrap(opts: Options, remove_unknown_db_accounts, dry_run):
    """Converge this host: packages, data volume, swap, MariaDB, app, uWSGI, nginx, timers.

    Then a host serving no release deploys the one kept on the data volume (deploy.keep_release),
    and with https.domain and https.email it gets the certificate (reused from the data volume)."""
    install_floor.defer_to_newer()
    cfg, platform = opts.load_with_platform()
    status = bootstrap_mod.converge_host(cfg, dry_run=dry_run,
                                         remove_unknown_db_accounts=remove_unknown_db_accounts)
    if status == 0 and cfg.https.domain and cfg.https.email:
        # Imported here: certbot's path costs 28-64 ms of imports, paid only by hosts with a domain.
        from .. import https_kept

        status = https_kept.at_bootstrap(cfg, platform, dry_run=dry_run)
    sys.exit(status)
