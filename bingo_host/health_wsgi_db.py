"""The health wrapper's database check (installed as bingo_health_db.py beside bingo_health.py;
standard library only: it runs inside the app's interpreter).

It connects as the app would (its bingo.ini, its driver, its TLS settings) and runs SELECT 1.
Cached answers the question "is the database down?" for the wrapper's 503s: at most one check
in flight in a process, and its answer reused for a second, so a burst of failing requests
costs one connect, not one each.
"""

import configparser
import importlib
import json
import os
import threading
import time

CONNECT_TIMEOUT = 3


def ini_path(release: str) -> str:
    """Where the app reads bingo.ini: <release>/musicbingo/bingo.ini, beside its package (only
    older apps, without that package, read it next to application.py)."""
    if os.path.isdir(os.path.join(release, "musicbingo")):
        return os.path.join(release, "musicbingo", "bingo.ini")
    return os.path.join(release, "bingo.ini")


def connect_args(db) -> tuple[str, dict]:
    """(DB-API module name, connect() keywords) for a [database] section, as the app would connect."""
    provider = db.get("provider", "sqlite")
    if not provider.startswith("mysql"):
        raise ValueError(f"database provider {provider!r} is not checked by bingo-host")
    module = "pymysql" if "pymysql" in (provider + db.get("driver", "")).lower() else "MySQLdb"
    args = {"host": db.get("host", "localhost"), "user": db.get("user", ""),
            "passwd": db.get("passwd", ""), "db": db.get("name", ""),
            "connect_timeout": min(int(db.get("connect_timeout", CONNECT_TIMEOUT)), CONNECT_TIMEOUT)}
    if db.get("port"):
        args["port"] = int(db["port"])
    if db.get("ssl"):
        args.update(ssl_args(json.loads(db["ssl"])))
    return module, args


# SQLAlchemy's MySQL dialects gather these URL query keys into the driver's ssl={...}.
SSL_KEYS = {"ssl_ca": str, "ssl_key": str, "ssl_cert": str, "ssl_capath": str, "ssl_cipher": str,
            "ssl_check_hostname": lambda v: str(v).lower() in ("true", "1", "yes", "on")}


def ssl_args(options: dict) -> dict:
    """connect() keywords from [database] ssl as the app passes it on: each truthy key but
    ssl_mode into its SQLAlchemy URL, whose ssl_* keys SQLAlchemy makes ssl={"ca": ...} and
    whose other keys reach the driver as they are."""
    args, ssl = {}, {}
    for key, value in options.items():
        if key == "ssl_mode" or not value:
            continue
        if key in SSL_KEYS:
            ssl[key[4:]] = SSL_KEYS[key](value)
        else:
            args[key] = value
    if ssl:
        args["ssl"] = ssl
    return args


def check_database(release: str) -> dict:
    """{"ok": bool, "latency_ms" or "error"}; never raises."""
    start = time.monotonic()
    try:
        ini = configparser.ConfigParser()  # with interpolation, as the app reads it
        if not ini.read(ini_path(release)):
            raise FileNotFoundError(f"{ini_path(release)} is missing or unreadable")
        module, args = connect_args(ini["database"])
        driver = importlib.import_module(module)
        conn = driver.connect(**args)
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchone()
        finally:
            conn.close()
    except Exception as exc:  # anything that stops the app reaching its database
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "latency_ms": round((time.monotonic() - start) * 1000, 1)}


class Cached:
    """check(release), its answer kept for `ttl` seconds after it ends; callers that arrive while
    one runs wait for it and share its answer (the lock is held across the check)."""

    def __init__(self, check=check_database, ttl: float = 1.0, clock=time.monotonic):
        self.check, self.ttl, self.clock = check, ttl, clock
        self.lock = threading.Lock()
        self.answer, self.at = None, None

    def get(self, release: str) -> tuple[dict, bool]:
        """(the answer, whether this call ran the check: its caller logs a fresh failure once)."""
        with self.lock:
            fresh = self.at is None or self.clock() - self.at >= self.ttl
            if fresh:
                self.answer = self.check(release)
                self.at = self.clock()
            return self.answer, fresh
