"""The database's part of a status report: can the app log in with the password it uses, and
which accounts on a local server bingo-host did not create."""

from __future__ import annotations

import configparser
import time

from .. import layout, secrets, subp
from ..config import Config
from ..facts.mariadb import account_name, connect, own_accounts, server_args, unknown_accounts
from ..facts.platforms import Platform
from ..regular_file import read_regular
from .report import Report

DB_TIMEOUT = 3


def app_password(cfg: Config) -> str | None:
    """The app's database password as the app sees it; never printed."""
    source = cfg.database.password
    if source == "generate":
        found = secrets.read_file(layout.PASSWORD_FILE)
        if found:
            return found
    elif not secrets.is_reference(source):
        return source
    # ssm:/secretsmanager: read what bootstrap rendered, not AWS (no boto3)
    ini = configparser.ConfigParser()  # with interpolation, as the app reads it ('%%' is '%')
    try:  # the app user can replace it with anything: a FIFO, a link to /dev/zero or /etc/shadow
        found = read_regular(f"{cfg.app.root}/shared/bingo.ini")
        if found is None:
            return None
        ini.read_string(found[0].decode(errors="replace"))
        return ini.get("database", "passwd", fallback=None)
    except (OSError, configparser.Error):
        return None


def check_database(r: Report, cfg: Config, platform: Platform) -> None:
    db = cfg.database
    where = f"socket {platform.mariadb_socket}" if db.local else f"{db.host}:{db.port}"
    entry = {"mode": "local" if db.local else "external", "endpoint": where, "name": db.name,
             "user": db.user, "reachable": False, "latency_ms": None, "error": None,
             "unknown_accounts": None}
    r.data["database"] = entry
    password = app_password(cfg)
    if password is None:
        entry["error"] = "no app password found (db-password or bingo.ini): run bootstrap"
        r.problem("database", entry["error"])
        return
    start = time.monotonic()
    try:
        server = {} if db.local else server_args(db)  # TCP, and TLS with database.tls_ca
        conn = connect(platform.mariadb_socket if db.local else None, db.user, password, database=db.name,
                       timeout=DB_TIMEOUT, read_timeout=DB_TIMEOUT, write_timeout=DB_TIMEOUT, **server)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
    except Exception as exc:  # pymysql.err.*, OSError
        args = getattr(exc, "args", ())
        text = f"({args[0]}) {args[1]}" if len(args) == 2 else str(exc) or type(exc).__name__
        entry["error"] = subp.mask(text, [password])
        r.problem("database", f"cannot reach {db.name} as {db.user} via {where}: {entry['error']}")
        return
    entry["reachable"] = True
    entry["latency_ms"] = round((time.monotonic() - start) * 1000, 1)


def check_accounts(r: Report, cfg: Config, platform: Platform) -> None:
    """Accounts on the local server that bingo-host did not create (a reattached datadir's):
    read as MariaDB's root over the socket, which works only when status runs as root."""
    try:
        conn = connect(platform.mariadb_socket, timeout=DB_TIMEOUT, read_timeout=DB_TIMEOUT)
    except Exception:  # not root, or the server is down: the app's login check says why
        return
    try:
        with conn.cursor() as cur:
            found = unknown_accounts(cur, own_accounts(cfg.database.user))
    finally:
        conn.close()
    names = [account_name(*a) for a in found]
    r.data["database"]["unknown_accounts"] = names
    if names:
        r.problem("database.accounts", f"database accounts bingo-host did not create: {', '.join(names)} "
                                       "(`bingo-host bootstrap --remove-unknown-db-accounts` drops them)",
                  "warning")
