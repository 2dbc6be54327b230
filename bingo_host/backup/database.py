"""Who the dump and the load log in as, the commands they run, and the SQL around them.

Each login may do only its part: locally the dump user reads the app database, the restore user
writes only the `<name>_restore` and `<name>_drill` schemas, and MariaDB's root makes, drops and
swaps them in sessions that never read the dump. An external server (Aurora) gets no restore
account (every host of the database would reset its password): the master login of
database.admin_secret loads and swaps. Passwords reach the clients only in a 0600 option file,
never on a command line or in the environment.
The client runs with --sandbox (nothing touches the file system) and --binary-mode (no client
commands), and one without --sandbox (MariaDB before 10.5.25, 10.6.18, 10.11.8, 11.0.6) is
refused.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pymysql

from .. import layout, secrets, subp
from ..errors import BingoHostError
from ..facts import mariadb
from . import BackupError

LOCK_WAIT = 30  # seconds the swap's RENAME TABLE may wait for the app's running statements


@dataclass(frozen=True)
class Login:
    socket: str | None  # None: TCP to host:port
    host: str
    port: int
    user: str
    password: str | None  # None: root by unix socket
    tls_ca: str | None = None  # TCP only: verify the server's certificate against this CA


def _app_password(cfg) -> str:
    source = cfg.database.password
    if source == "generate":
        value = secrets.read_file(layout.PASSWORD_FILE)
        if value is None:
            raise BackupError(f"no app password in {layout.PASSWORD_FILE}: run `bingo-host bootstrap`")
        return value
    return secrets.fetch(source) if secrets.is_reference(source) else source


def dump_login(cfg, platform) -> Login:
    db = cfg.database
    if not db.local:
        return Login(None, db.host, db.port, db.user, _app_password(cfg), db.tls_ca)
    password = secrets.read_file(layout.DUMP_PASSWORD_FILE)
    if password is None:
        raise BackupError(f"no dump password in {layout.DUMP_PASSWORD_FILE}: run `bingo-host bootstrap`, "
                          f"which creates it with the {layout.DUMP_DB_USER} user")
    return Login(platform.mariadb_socket, "localhost", db.port, layout.DUMP_DB_USER, password)


def admin_login(cfg, platform) -> Login:
    db = cfg.database
    if not db.local and db.admin_secret:
        user, password = secrets.fetch_login(db.admin_secret)
        return Login(None, db.host, db.port, user, password, db.tls_ca)
    if not db.local:
        return Login(None, db.host, db.port, db.user, _app_password(cfg), db.tls_ca)
    return Login(platform.mariadb_socket, "localhost", db.port, "root", None)


def load_login(cfg, platform) -> Login:
    """Who the client loading a dump logs in as: the restore user on a local server."""
    if not cfg.database.local:
        return admin_login(cfg, platform)
    password = secrets.read_file(layout.RESTORE_PASSWORD_FILE)
    if password is None:
        raise BackupError(f"no restore password in {layout.RESTORE_PASSWORD_FILE}: run `bingo-host "
                          f"bootstrap`, which creates it with the {layout.RESTORE_DB_USER} user")
    return Login(platform.mariadb_socket, "localhost", cfg.database.port, layout.RESTORE_DB_USER, password)


@contextmanager
def option_file(login: Login) -> Iterator[str]:
    """A [client] option file (0600, removed on exit) that the mariadb tools read first."""
    lines = ["[client]", f"user={login.user}"]
    if login.password is not None:
        escaped = login.password.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'password="{escaped}"')
    if login.socket:
        lines += ["protocol=socket", f"socket={login.socket}"]
    else:
        lines += ["protocol=tcp", f"host={login.host}", f"port={login.port}"]
        if login.tls_ca:
            lines += [f"ssl-ca={login.tls_ca}", "ssl-verify-server-cert"]
    fd, path = tempfile.mkstemp(prefix="bingo-host-", suffix=".cnf")  # 0600, root's
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def dump_argv(options: str, database: str) -> list[str]:
    # --single-transaction: one consistent snapshot, no table locks (InnoDB); --quick: row by row,
    # never a table in memory; --no-tablespaces: needs no PROCESS privilege; --hex-blob: binary
    # values as 0x..., never raw bytes in the text; --skip-triggers: a trigger's body is any SQL,
    # run later with its definer's rights, which no allowlist can vet (statements.py refuses it).
    return ["mariadb-dump", f"--defaults-extra-file={options}", "--single-transaction", "--quick",
            "--no-tablespaces", "--skip-lock-tables", "--hex-blob", "--skip-triggers",
            "--default-character-set=utf8mb4", database]


def triggers(cur, database: str) -> list[str]:
    cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s "
                "ORDER BY TRIGGER_NAME", (database,))
    return [row[0] for row in cur.fetchall()]


CLIENT = "mariadb"
SANDBOX = re.compile(r"^\s*--sandbox\s", re.M)


def require_sandbox() -> None:
    """Refuse to load with a client that has no --sandbox (its own help lists its options)."""
    try:
        out = subp.run([CLIENT, "--no-defaults", "--help", "--verbose"], timeout=60).stdout
    except BingoHostError as exc:
        raise BackupError(f"cannot run the {CLIENT} client: {exc}") from None
    if not SANDBOX.search(out):
        version = out.splitlines()[0] if out else "unknown version"
        raise BackupError(f"the {CLIENT} client ({version}) has no --sandbox: restores need MariaDB "
                          "10.5.25, 10.6.18, 10.11.8, 11.0.6 or later; upgrade the client package")


def load_argv(options: str, database: str) -> list[str]:
    return [CLIENT, f"--defaults-extra-file={options}", "--batch", "--sandbox", "--binary-mode",
            "--default-character-set=utf8mb4", database]


@contextmanager
def session(login: Login, what: str) -> Iterator:
    """A cursor on the server; any MariaDB error becomes a BackupError saying what failed."""
    where = login.socket or f"{login.host}:{login.port}"
    try:
        tls = {"ssl": {"ca": login.tls_ca, "check_hostname": True}} if login.tls_ca else {}
        conn = mariadb.connect(login.socket, login.user, login.password, host=login.host,
                               port=login.port, read_timeout=3600, **tls)
    except pymysql.err.MySQLError as exc:
        raise BackupError(f"cannot connect to MariaDB at {where} as {login.user}: "
                          f"{exc.args[-1] if exc.args else exc}") from None
    try:
        with conn.cursor() as cur:
            yield cur
    except pymysql.err.MySQLError as exc:
        raise BackupError(f"{what} failed: {exc.args[-1] if exc.args else exc}") from None
    finally:
        conn.close()


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def side_names(database: str) -> dict[str, str]:
    """The staging, replaced and drill schemas of a database (at most 64 characters each)."""
    names = mariadb.side_schemas(database)
    if database in names.values():
        raise BackupError(f"database.name {database} collides with the name of its own "
                          "restore schema: cannot restore into it")
    return names


def create_empty(cur, database: str, like: str) -> None:
    """(Re)create `database` empty, with the character set and collation of `like`."""
    cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME=%s", (like,))
    row = cur.fetchone()
    charset, collation = row if row else ("utf8mb4", "utf8mb4_unicode_ci")
    cur.execute(f"DROP DATABASE IF EXISTS {ident(database)}")
    cur.execute(f"CREATE DATABASE {ident(database)} CHARACTER SET {charset} COLLATE {collation}")


def drop(cur, database: str) -> None:
    cur.execute(f"DROP DATABASE IF EXISTS {ident(database)}")


def tables(cur, database: str) -> dict[str, str]:
    """{table: 'BASE TABLE' | 'VIEW' | ...}"""
    cur.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s",
                (database,))
    return dict(cur.fetchall())


def row_counts(cur, database: str) -> dict[str, int]:
    counts = {}
    for table, kind in sorted(tables(cur, database).items()):
        if kind == "BASE TABLE":
            cur.execute(f"SELECT COUNT(*) FROM {ident(database)}.{ident(table)}")
            counts[table] = cur.fetchone()[0]
    return counts


def swap(cur, live: str, staging: str, replaced: str) -> None:
    """One RENAME TABLE: every live table to `replaced` (emptied first), every staging table to
    live. MariaDB runs it atomically: the app sees the old tables or the new ones, never a mix.
    Foreign keys move with their tables."""
    views = [t for t, kind in {**tables(cur, live), **tables(cur, staging)}.items() if kind != "BASE TABLE"]
    if views:
        raise BackupError(f"views cannot move between databases ({', '.join(sorted(views))}): "
                          "restore them by hand")
    if names := triggers(cur, live):  # MariaDB: "Trigger in wrong schema"
        raise BackupError(f"tables with triggers cannot move between databases ({', '.join(names)} in "
                          f"{live}): drop them, restore, and create them again")
    create_empty(cur, replaced, live)
    pairs = [f"{ident(live)}.{ident(t)} TO {ident(replaced)}.{ident(t)}" for t in sorted(tables(cur, live))]
    pairs += [f"{ident(staging)}.{ident(t)} TO {ident(live)}.{ident(t)}" for t in sorted(tables(cur, staging))]
    cur.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT,))
    cur.execute("RENAME TABLE " + ", ".join(pairs))
