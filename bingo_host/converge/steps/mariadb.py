"""MariaDB on the data volume: config, datadir, service, the app, backup and dump users.

The datadir is initialised only when it has no `mysql` system schema, into a temporary
directory that is renamed into place, so a run killed mid-way never leaves a half datadir
that a later run would mistake for a real one. An existing datadir (a reattached volume) is
kept as it is.
"""

from __future__ import annotations

import os
import shutil

from ... import layout, render, subp
from ...facts import mariadb
from ...ops import service
from ...errors import BingoHostError

NAME = "mariadb"


def _initialise(ctx, datadir: str) -> None:
    user = ctx.platform.mariadb_user
    staging = os.path.join(os.path.dirname(datadir), ".bingo-host-datadir-init")

    def init():
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging, mode=0o750)
        shutil.chown(staging, user, user)
        subp.run(["mariadb-install-db", f"--user={user}", f"--datadir={staging}",
                  "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=600)
        if os.path.isdir(datadir):
            os.rmdir(datadir)  # empty (checked before): a non-empty one is refused
        os.rename(staging, datadir)

    ctx.change(f"initialise a new MariaDB datadir in {datadir}", init)


def _ensure_user(ctx, cur, user: str, password: str, wanted: set[tuple[str, str]], what: str) -> None:
    sock = ctx.platform.mariadb_socket
    have = mariadb.grants(cur, user)
    if have is None:
        ctx.change(f"create the {what} user {user}@localhost",
                   lambda: cur.execute("CREATE USER %s@'localhost' IDENTIFIED BY %s", (user, password)))
        have = set()
    elif not mariadb.can_login(sock, user, password):
        ctx.change(f"set the {what} user's password",
                   lambda: cur.execute("ALTER USER %s@'localhost' IDENTIFIED BY %s", (user, password)))
    if have != wanted:
        # Anything more (global privileges, a grant option, a role: a reattached datadir's
        # account, or one changed by hand) is revoked: each user may do only what it is for.
        extra = sorted(have - wanted)
        roles = [obj for privileges, obj in extra if privileges == "ROLE"]

        def regrant():
            for role in roles:  # as SHOW GRANTS quoted it; before REVOKE ALL, which drops them too
                cur.execute(f"REVOKE {role} FROM %s@'localhost'", (user,))
            if roles:
                cur.execute("SET DEFAULT ROLE NONE FOR %s@'localhost'", (user,))
            if have:
                cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@'localhost'", (user,))
            for privileges, obj in sorted(wanted):
                cur.execute(f"GRANT {privileges} ON {obj} TO %s@'localhost'", (user,))
        more = [f"role {o}" if p == "ROLE" else f"{p} ON {o}" for p, o in extra]
        revoke = f"revoke {user}'s {', '.join(more)}; " if more else ""
        ctx.change(f"{revoke}grant {user} " + ", ".join(f"{p} ON {o}" for p, o in sorted(wanted)), regrant)


def _unknown_accounts(ctx, cur, wanted: set[tuple[str, str]]) -> None:
    """Report (or, with --remove-unknown-db-accounts, drop) accounts bingo-host did not create:
    a reattached datadir keeps whoever could log in to it before."""
    unknown = mariadb.unknown_accounts(cur, wanted)
    if not unknown:
        return
    if not ctx.remove_unknown_db_accounts:
        names = ", ".join(mariadb.account_name(*a) for a in unknown)
        ctx.warn(f"database accounts bingo-host did not create: {names}; review them, or remove them "
                 "with `bingo-host bootstrap --remove-unknown-db-accounts`")
        return
    for user, host, is_role in unknown:
        sql, args = ("DROP ROLE %s", (user,)) if is_role else ("DROP USER %s@%s", (user, host))
        ctx.change(f"drop database {mariadb.account_name(user, host, is_role)} (bingo-host did not "
                   "create it)", lambda sql=sql, args=args: cur.execute(sql, args))


def converge(ctx) -> str:
    cfg, platform = ctx.cfg, ctx.platform
    db = cfg.database
    if not db.local:
        mariadb.check_external(db.host, db.port, db.user, ctx.secrets["app_password"], db.name)
        return f"external database {db.user}@{db.host}:{db.port}/{db.name} answers"

    datadir = render.datadir(cfg, ctx.facts)
    unit = f"{platform.mariadb_service}.service"
    restart = render.restart(platform.mariadb_service)

    if not os.path.ismount(cfg.volume.mountpoint):
        if ctx.dry_run:  # the plan of a host whose volume step has not run yet
            ctx.change(f"configure, initialise and start MariaDB on {datadir}; create database {db.name} "
                       f"and users {db.user}, {layout.BACKUP_DB_USER}, {layout.DUMP_DB_USER}")
            return ""
        raise BingoHostError(f"{cfg.volume.mountpoint} is not mounted: refusing to put MariaDB's data "
                             "on the root filesystem")
    dropin = ctx.managed("mariadb-mount.conf")
    cnf = ctx.managed("mariadb-server.cnf")
    ctx.ensure_file(cnf)  # both owe the restart (their on_change)
    if ctx.ensure_file(dropin):
        ctx.change("systemctl daemon-reload", service.daemon_reload)

    mount_st = os.stat(cfg.volume.mountpoint)
    if (mount_st.st_uid, mount_st.st_gid) != _ids(platform.mariadb_user):
        ctx.change(f"chown {platform.mariadb_user} {cfg.volume.mountpoint}",
                   lambda: shutil.chown(cfg.volume.mountpoint, platform.mariadb_user, platform.mariadb_user))
    if not os.path.isdir(os.path.join(datadir, "mysql")):
        if os.path.isdir(datadir) and os.listdir(datadir):
            raise BingoHostError(f"{datadir} holds files but no MariaDB system schema (mysql/): "
                                 "refusing to initialise over it")
        ctx.set_pending(restart)
        _initialise(ctx, datadir)

    state = service.ensure_running(ctx, unit, restart, timeout=300)
    if ctx.dry_run and not state.running:
        return ""

    conn = mariadb.connect(platform.mariadb_socket)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (db.name,))
            if not cur.fetchone():
                ctx.change(f"create database {db.name}", lambda: cur.execute(
                    f"CREATE DATABASE `{db.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            _ensure_user(ctx, cur, db.user, ctx.secrets["app_password"],
                         {("ALL PRIVILEGES", f"`{db.name}`.*")}, "app")
            _ensure_user(ctx, cur, layout.BACKUP_DB_USER, ctx.secrets["backup_password"],
                         {("RELOAD", "*.*")}, "backup")
            # What mariadb-dump --single-transaction reads (tables, views, triggers), nothing else.
            _ensure_user(ctx, cur, layout.DUMP_DB_USER, ctx.secrets["dump_password"],
                         {("SELECT, SHOW VIEW, TRIGGER", f"`{db.name}`.*")}, "dump")
            _unknown_accounts(ctx, cur, mariadb.own_accounts(db.user))
    finally:
        conn.close()
    return (f"running on {datadir}; database {db.name}, users {db.user}, {layout.BACKUP_DB_USER} and "
            f"{layout.DUMP_DB_USER} as wanted")


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
