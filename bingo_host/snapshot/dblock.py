"""The MariaDB session that holds commits back while the data volume is snapshotted.

``BACKUP STAGE BLOCK_COMMIT`` lets reads and uncommitted writes go on while no transaction can
commit, so InnoDB's files on the frozen volume are consistent; a server before MariaDB 10.4
gets ``FLUSH TABLES WITH READ LOCK``. The lock lives in this session: closing it releases the
lock, so a run that dies cannot leave the database locked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pymysql

from .. import layout
from ..facts import mariadb
from ..ops.cleanup import Cleanup
from . import SnapshotError

log = logging.getLogger(__name__)

DB_LOCK_WAIT_TIMEOUT = 10  # seconds BACKUP STAGE may wait for running DDL / commits
DB_CONNECT_TIMEOUT = 5


def read_password(path: str | Path) -> str:
    try:
        pw = Path(path).read_text().strip()
    except OSError as exc:
        raise SnapshotError(
            f"cannot read the backup user's password file {path} ({exc.strerror}): bootstrap "
            f"creates it with the {layout.BACKUP_DB_USER} user") from None
    if not pw:
        raise SnapshotError(f"the backup user's password file {path} is empty")
    return pw


def connect(socket_path: str, password: str):
    """A session as the backup user, its reads allowed to outlast the lock wait."""
    try:
        return mariadb.connect(socket_path, layout.BACKUP_DB_USER, password,
                               timeout=DB_CONNECT_TIMEOUT, read_timeout=DB_LOCK_WAIT_TIMEOUT + 50)
    except pymysql.err.MySQLError as exc:
        detail = exc.args[-1] if exc.args else exc
        raise SnapshotError(f"cannot connect to MariaDB at {socket_path} as "
                            f"{layout.BACKUP_DB_USER}: {detail}") from None


class DatabaseLock:
    """BACKUP STAGE START + BLOCK_COMMIT in the given session (FTWRL where unsupported).

    Commits (and DDL) by every other session wait until :meth:`release`.
    """

    def __init__(self, conn):
        self.conn = conn
        self.method: str | None = None

    def acquire(self) -> None:
        cur = self.conn.cursor()
        cur.execute("SET SESSION lock_wait_timeout = %s", (DB_LOCK_WAIT_TIMEOUT,))
        try:
            try:
                cur.execute("BACKUP STAGE START")
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] != 1064:  # ER_PARSE_ERROR: a server before MariaDB 10.4
                    raise
                cur.execute("FLUSH TABLES WITH READ LOCK")
                self.method = "FLUSH TABLES WITH READ LOCK"
                return
            self.method = "BACKUP STAGE"
            with Cleanup() as undo:
                undo.register(self.release)
                cur.execute("BACKUP STAGE BLOCK_COMMIT")
        except pymysql.err.MySQLError as exc:
            raise SnapshotError(f"could not lock the database for the snapshot: "
                                f"{exc.args[-1] if exc.args else exc}") from None

    def release(self) -> None:
        if not self.method:
            return
        sql = "BACKUP STAGE END" if self.method == "BACKUP STAGE" else "UNLOCK TABLES"
        self.method = None
        try:
            self.conn.cursor().execute(sql)
        except pymysql.err.MySQLError as exc:
            # Closing the session (which the caller does next) releases the lock too.
            log.warning("%s failed (%s); closing the session releases the lock", sql, exc)
            self.conn.close()
