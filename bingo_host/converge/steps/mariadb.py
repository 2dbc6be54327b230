"""MariaDB on the data volume: config, datadir, service, the app, backup, dump and restore users.

The datadir is initialised only when it has no `mysql` system schema, into a temporary
directory that is renamed into place, so a run killed mid-way never leaves a half datadir
that a later run would mistake for a real one. An existing datadir (a reattached volume) is
kept as it is.
"""

from __future__ import annotations

import os
import shutil

import pymysql

from ... import layout, render, secrets, subp
from ...facts import mariadb, paths, platforms, users
from ...ops import reverter, service
from ...errors import BingoHostError

NAME = "mariadb"
UNITS = tuple(dict.fromkeys(f"{p.mariadb_service}.service" for p in platforms.PLATFORMS.values()))
# What loading a dump takes (statements.py lets nothing else through), on the staging and drill
# schemas only: never the live one (a privileged login swaps the tables in), never another.
RESTORE_PRIVILEGES = "SELECT, INSERT, CREATE, DROP, REFERENCES, INDEX, ALTER, LOCK TABLES"


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


def _set_password(cur, user: str, host: str, password: str) -> None:
    """Set the account's password and keep its current one valid too, until the next change:
    workers (or other hosts) still using it keep connecting until they reload with the new one.
    MySQL 8 (Aurora) says so itself; MariaDB is given both password hashes."""
    if not mariadb.is_mariadb(cur):
        cur.execute("ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD", (user, host, password))
    elif current := mariadb.native_password_hash(cur, user, host):
        cur.execute("ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING PASSWORD(%s) "
                    "OR mysql_native_password USING %s", (user, host, password, current))
    else:
        cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))


def _ensure_user(ctx, cur, user: str, host: str, password: str, wanted: set[tuple[str, str]], what: str,
                 can_login) -> None:
    have = ctx.fact(mariadb.grants, cur, user, host)
    if have is None:
        ctx.change(f"create the {what} user {user}@{host}",
                   lambda: cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password)))
        have = set()
    elif not can_login(user, password):
        ctx.change(f"set the {what} user's password (the previous one stays valid until the next change)",
                   lambda: _set_password(cur, user, host, password))
    if have != wanted:
        # Anything more (global privileges, a grant option, a role: a reattached datadir's
        # account, or one changed by hand) is revoked: each user may do only what it is for.
        extra = sorted(have - wanted)
        roles = [obj for privileges, obj in extra if privileges == "ROLE"]

        def regrant():
            for role in roles:  # as SHOW GRANTS quoted it; before REVOKE ALL, which drops them too
                cur.execute(f"REVOKE {role} FROM %s@%s", (user, host))
            if roles:
                cur.execute("SET DEFAULT ROLE NONE FOR %s@%s", (user, host))
            if have:
                cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host))
            for privileges, obj in sorted(wanted):
                cur.execute(f"GRANT {privileges} ON {obj} TO %s@%s", (user, host))
        more = [f"role {o}" if p == "ROLE" else f"{p} ON {o}" for p, o in extra]
        revoke = f"revoke {user}'s {', '.join(more)}; " if more else ""
        ctx.change(f"{revoke}grant {user} " + ", ".join(f"{p} ON {o}" for p, o in sorted(wanted)), regrant)


def _unknown_accounts(ctx, cur, wanted: set[tuple[str, str]]) -> None:
    """Report (or, with --remove-unknown-db-accounts, drop) accounts bingo-host did not create:
    a reattached datadir keeps whoever could log in to it before."""
    unknown = ctx.fact(mariadb.unknown_accounts, cur, wanted)
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
        return _converge_external(ctx)

    datadir = render.datadir(cfg, ctx.facts)
    unit = f"{platform.mariadb_service}.service"
    restart = service.restart(platform.mariadb_service)

    if not ctx.fact(paths.ismount, cfg.volume.mountpoint):
        if ctx.dry_run:  # the plan of a host whose volume step has not run yet
            ctx.change(f"configure, initialise and start MariaDB on {datadir}; create database {db.name} "
                       f"and users {db.user}, {layout.BACKUP_DB_USER}, {layout.DUMP_DB_USER}, "
                       f"{layout.RESTORE_DB_USER}")
            return ""
        raise BingoHostError(f"{cfg.volume.mountpoint} is not mounted: refusing to put MariaDB's data "
                             "on the root filesystem")
    dropin = ctx.managed("mariadb-mount.conf")
    cnf = ctx.managed("mariadb-server.cnf")
    changing = [mf.path for mf in (cnf, dropin) if ctx.differs(mf)]
    backup = reverter.Backup(changing, read=lambda path: ctx.fact(reverter.saved, path)) if changing else None
    if cnf.path in changing:  # both owe the restart (their on_change)
        ctx.ensure_file(cnf)
    if dropin.path in changing and ctx.ensure_file(dropin):
        ctx.change("systemctl daemon-reload", service.daemon_reload)

    mount_st = ctx.fact(paths.stat, cfg.volume.mountpoint)
    if (mount_st.uid, mount_st.gid) != ctx.fact(users.ids, platform.mariadb_user):
        ctx.change(f"chown {platform.mariadb_user} {cfg.volume.mountpoint}",
                   lambda: shutil.chown(cfg.volume.mountpoint, platform.mariadb_user, platform.mariadb_user))
    if not ctx.fact(paths.isdir, os.path.join(datadir, "mysql")):
        if ctx.fact(paths.entries, datadir):
            raise BingoHostError(f"{datadir} holds files but no MariaDB system schema (mysql/): "
                                 "refusing to initialise over it")
        ctx.set_pending(restart)
        _initialise(ctx, datadir)

    state = reverter.running_or_put_back(ctx, unit, restart, backup, timeout=300)
    if ctx.dry_run and not state.running:
        return ""

    conn = ctx.fact(mariadb.connect, platform.mariadb_socket)
    try:
        with conn.cursor() as cur:
            if not ctx.fact(mariadb.has_schema, cur, db.name):
                ctx.change(f"create database {db.name}", lambda: cur.execute(
                    f"CREATE DATABASE `{db.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))

            def login(user, password):
                return ctx.fact(mariadb.can_login, platform.mariadb_socket, user, password)

            _ensure_user(ctx, cur, db.user, "localhost", ctx.secrets["app_password"],
                         {("ALL PRIVILEGES", mariadb.schema_grant(db.name))}, "app", login)
            _ensure_user(ctx, cur, layout.BACKUP_DB_USER, "localhost", ctx.secrets["backup_password"],
                         {("RELOAD", "*.*")}, "backup", login)
            # What mariadb-dump --single-transaction reads (tables, views, triggers), nothing else.
            _ensure_user(ctx, cur, layout.DUMP_DB_USER, "localhost", ctx.secrets["dump_password"],
                         {("SELECT, SHOW VIEW, TRIGGER", mariadb.schema_grant(db.name))}, "dump", login)
            sides = mariadb.side_schemas(db.name)
            _ensure_user(ctx, cur, layout.RESTORE_DB_USER, "localhost", ctx.secrets["restore_password"],
                         {(RESTORE_PRIVILEGES, mariadb.schema_grant(sides[kind])) for kind in ("restore", "drill")},
                         "restore", login)
            _unknown_accounts(ctx, cur, mariadb.own_accounts(db.user))
    finally:
        conn.close()
    return (f"running on {datadir}; database {db.name}, users {db.user}, {layout.BACKUP_DB_USER}, "
            f"{layout.DUMP_DB_USER} and {layout.RESTORE_DB_USER} as wanted")


def _converge_external(ctx) -> str:
    """An external server (Aurora): with database.admin_secret, the app's database and its own
    user (any host, its database only) made with the master login; then the app's login."""
    db = ctx.cfg.database
    if db.tls_ca and not ctx.fact(paths.isfile, db.tls_ca):
        raise BingoHostError(f"database.tls_ca: {db.tls_ca} does not exist (the server's CA bundle)")
    tls = " over TLS" if db.tls_ca else ""
    if db.admin_secret:
        _ensure_external_user(ctx)
        if ctx.dry_run and ctx.changes:
            return ""  # the app's login works only once the planned changes are made
    ctx.fact(mariadb.check_external, db, db.user, ctx.secrets["app_password"])
    return f"external database {db.user}@{db.host}:{db.port}/{db.name} answers{tls}"


def _ensure_external_user(ctx) -> None:

    db = ctx.cfg.database
    admin, admin_password = ctx.fact(secrets.fetch_login, db.admin_secret)
    if admin == db.user:
        raise BingoHostError(f"database.user: {db.user} is the master login of database.admin_secret; "
                             "the app needs a user of its own")
    server = mariadb.server_args(db)
    try:
        conn = ctx.fact(mariadb.connect, None, admin, admin_password, **server)
    except pymysql.err.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise BingoHostError(f"cannot log in to {db.host}:{db.port} as {admin} (database.admin_secret): "
                             f"{reason}") from None
    try:
        with conn.cursor() as cur:
            if not ctx.fact(mariadb.has_schema, cur, db.name):
                ctx.change(f"create database {db.name} on {db.host}", lambda: cur.execute(
                    f"CREATE DATABASE `{db.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            _ensure_user(ctx, cur, db.user, "%", ctx.secrets["app_password"],
                         {("ALL PRIVILEGES", mariadb.schema_grant(db.name))}, "app",
                         lambda user, password: ctx.fact(mariadb.can_login, None, user, password, **server))
    finally:
        conn.close()

