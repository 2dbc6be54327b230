"""MariaDB facts and SQL through PyMySQL over the unix socket (no passwords on command lines)."""

from __future__ import annotations

import re

import pymysql

from .. import layout
from ..errors import BingoHostError

GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO .*?( WITH GRANT OPTION)?$")
ROLE_GRANT = re.compile(r"^GRANT (`(?:[^`]|``)+`) TO ")
# What mariadb-install-db creates (--auth-root-authentication-method=socket): root and the
# distro's `mysql` (unix_socket: only those OS users), mariadb.sys (owns system views, no login).
INSTALL_ACCOUNTS = frozenset({("root", "localhost"), ("mysql", "localhost"), ("mariadb.sys", "localhost")})


def connect(socket: str | None = None, user: str = "root", password: str | None = None,
            host: str | None = None, port: int = 3306, database: str | None = None, timeout: int = 10,
            **options):
    """An autocommit PyMySQL connection over the socket, or TCP when no socket is given;
    ``options`` go to pymysql.connect as they are (read_timeout, ...)."""
    kwargs = dict(user=user, password=password or "", connect_timeout=timeout, autocommit=True,
                  database=database, **options)
    if socket:
        # TLS over a local socket protects nothing, and PyMySQL >= 2.2 would build a TLS
        # context for every connection ("preferred" mode): ~25 ms each, on every converge.
        kwargs.update(unix_socket=socket, ssl_disabled=True)
    else:
        kwargs.update(host=host, port=port)
    return pymysql.connect(**kwargs)


def server_args(db) -> dict:
    """connect() keywords for an external server (config.Database): TCP, and with
    database.tls_ca TLS whose certificate must chain to that CA and name database.host."""
    args = {"host": db.host, "port": db.port}
    if db.tls_ca:
        args["ssl"] = {"ca": db.tls_ca, "check_hostname": True}
    return args


def can_login(socket: str | None, user: str, password: str, database: str | None = None,
              **server) -> bool:
    """Whether user/password are accepted (over the socket, or TCP with server_args)."""
    try:
        connect(socket, user, password, database=database, **server).close()
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] in (1044, 1045, 1698):  # access denied
            return False
        raise
    return True


def has_schema(cur, name: str) -> bool:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (name,))
    return cur.fetchone() is not None


def grants(cur, user: str, host: str = "localhost") -> set[tuple[str, str]] | None:
    """{(privileges, object)} from SHOW GRANTS; None when the user does not exist."""
    cur.execute("SELECT 1 FROM mysql.user WHERE User=%s AND Host=%s", (user, host))
    if not cur.fetchone():
        return None
    cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
    return parse_grants(row[0] for row in cur.fetchall())


def parse_grants(lines) -> set[tuple[str, str]]:
    """{(privileges, object)}: ('ALL PRIVILEGES', '`bingo`.*'); a grant option adds
    ('GRANT OPTION', object), a granted role ('ROLE', '`name`')."""
    found = set()
    for line in lines:
        m = GRANT.match(line)
        if m and m.group(1) != "USAGE":
            found.add((m.group(1), m.group(2)))
        if m and m.group(3):
            found.add(("GRANT OPTION", m.group(2)))
        if not m and (r := ROLE_GRANT.match(line)):
            found.add(("ROLE", r.group(1)))
    return found


def unknown_accounts(cur, wanted: set[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """(user, host, is_role) of every account and role that is neither ``wanted`` (bingo-host's
    own) nor one mariadb-install-db creates: what a reattached datadir brought along."""
    cur.execute("SELECT User, Host, is_role = 'Y' FROM mysql.user ORDER BY User, Host")
    return [(u, h, bool(r)) for u, h, r in cur.fetchall() if (u, h) not in wanted | INSTALL_ACCOUNTS]


def own_accounts(app_user: str) -> set[tuple[str, str]]:
    """The accounts bingo-host creates on a local server: the app's, the snapshot's, the dump's,
    the restore's."""
    return {(u, "localhost") for u in (app_user, layout.BACKUP_DB_USER, layout.DUMP_DB_USER,
                                       layout.RESTORE_DB_USER)}


def schema_grant(database: str) -> str:
    """The object of GRANT ... ON for all of one database, as SHOW GRANTS writes it. In a
    database name there, '_' and '%' are wildcards: `mysq_`.* would cover `mysql`. Escaped,
    they name only themselves."""
    escaped = database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return "`" + escaped.replace("`", "``") + "`.*"


def side_schemas(database: str) -> dict[str, str]:
    """The staging (restore), replaced and drill schemas of a database (64 characters at most)."""
    return {kind: f"{database[:50]}_{kind}" for kind in ("restore", "replaced", "drill")}


def account_name(user: str, host: str, is_role: bool = False) -> str:
    return f"role '{user}'" if is_role else f"'{user}'@'{host}'"


def is_mariadb(cur) -> bool:
    cur.execute("SELECT VERSION()")
    return "mariadb" in cur.fetchone()[0].lower()


NATIVE_HASH = re.compile(r"(?:BY PASSWORD|mysql_native_password USING) '(\*[0-9A-F]{40})'")


def native_password_hash(cur, user: str, host: str) -> str | None:
    """The account's current mysql_native_password hash on MariaDB (the first one SHOW CREATE
    USER names), or None for another authentication plugin."""
    cur.execute("SHOW CREATE USER %s@%s", (user, host))
    m = NATIVE_HASH.search(cur.fetchone()[0])
    return m.group(1) if m else None


def check_external(db, user: str, password: str) -> None:
    """Log in to the external server as the app (config.Database db) and SELECT 1."""
    host, port, database = db.host, db.port, db.name
    try:
        conn = connect(None, user, password, database=database, **server_args(db))
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
    except pymysql.err.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise BingoHostError(
            f"database {user}@{host}:{port}/{database} does not answer: {reason}") from None
