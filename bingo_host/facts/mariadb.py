"""MariaDB facts and SQL through PyMySQL over the unix socket (no passwords on command lines)."""

from __future__ import annotations

import re

from ..errors import BingoHostError

GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO ")


def connect(socket: str | None = None, user: str = "root", password: str | None = None,
            host: str | None = None, port: int = 3306, database: str | None = None, timeout: int = 10,
            **options):
    """An autocommit PyMySQL connection over the socket, or TCP when no socket is given;
    ``options`` go to pymysql.connect as they are (read_timeout, ...)."""
    import pymysql

    kwargs = dict(user=user, password=password or "", connect_timeout=timeout, autocommit=True,
                  database=database, **options)
    if socket:
        # TLS over a local socket protects nothing, and PyMySQL >= 2.2 would build a TLS
        # context for every connection ("preferred" mode): ~25 ms each, on every converge.
        kwargs.update(unix_socket=socket, ssl_disabled=True)
    else:
        kwargs.update(host=host, port=port)
    return pymysql.connect(**kwargs)


def can_login(socket: str, user: str, password: str, database: str | None = None) -> bool:
    import pymysql

    try:
        connect(socket, user, password, database=database).close()
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] in (1044, 1045, 1698):  # access denied
            return False
        raise
    return True


def grants(cur, user: str, host: str = "localhost") -> set[tuple[str, str]] | None:
    """{(privileges, object)} from SHOW GRANTS; None when the user does not exist."""
    cur.execute("SELECT 1 FROM mysql.user WHERE User=%s AND Host=%s", (user, host))
    if not cur.fetchone():
        return None
    cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
    return parse_grants(row[0] for row in cur.fetchall())


def parse_grants(lines) -> set[tuple[str, str]]:
    found = set()
    for line in lines:
        m = GRANT.match(line)
        if m and m.group(1) != "USAGE":
            found.add((m.group(1), m.group(2)))
    return found


def check_external(host: str, port: int, user: str, password: str, database: str) -> None:
    import pymysql

    try:
        conn = connect(None, user, password, host=host, port=port, database=database)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
    except pymysql.err.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise BingoHostError(
            f"database {user}@{host}:{port}/{database} does not answer: {reason}") from None
