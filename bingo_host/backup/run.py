"""`bingo-host backup`, `restore --dump` and `restore-drill`, each start to end.

backup: mariadb-dump | gzip -> S3 (counting rows on the way), the sidecar, retention, the record.
restore: under the host lock and only between deployments: load into `<name>_restore`, check,
    one RENAME TABLE (the live tables kept in `<name>_replaced` until the next restore).
drill: load the latest complete dump into `<name>_drill`, compare its row counts with the
    sidecar's, drop it, record the outcome for `status`.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import sys
from pathlib import Path
from typing import Callable

from .. import state, subp
from ..deploy import record as deploy_record
from ..errors import BingoHostError, ConfigError
from ..facts import platforms
from ..facts.platforms import Platform
from ..ops.cleanup import Cleanup
from ..ops.lock import backup_lock, host_lock
from . import BackupError, database, store
from .dumpfile import GzipReader, gunzip_statements

log = logging.getLogger(__name__)
DUMP_TIMEOUT = 6 * 3600
LOAD_TIMEOUT = 6 * 3600
LOCK_WAIT = 1800  # a backup and a drill whose timers meet: the second waits for the first


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _tags(cfg) -> dict[str, str]:
    return {store.MANAGED_TAG: "true", store.DATABASE_TAG: cfg.database.name,
            store.HOST_TAG: socket.gethostname()}


def _recorded(path: str, record: dict, body: Callable[[], None]) -> dict:
    """body(), then its outcome (ok, error, finished) in the state file either way: a failure,
    a bug or a SIGTERM too (never a record that says nothing)."""
    with Cleanup() as undo:
        undo.register(_record_failure, path, record)
        body()
    record["ok"] = True
    _write_record(path, record)
    return record


def _record_failure(path: str, record: dict) -> None:
    """A cleanup: the record names the exception the cleanups run for."""
    exc = sys.exc_info()[1]
    record.update(ok=False, error=str(exc) or type(exc).__name__)
    _write_record(path, record)


def _write_record(path: str, record: dict) -> None:
    record["finished"] = _now()
    try:
        state.write_json(path, record)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)


# -- what a dry run says --

def plan(cfg, command: str, dump_url: str | None = None) -> str:
    """What backup, restore-drill or restore --dump would do, from the config alone (no AWS
    call, no database session); the same refusals as the run for bad input."""
    b, name = cfg.backups, cfg.database.name
    where = f"s3://{b.bucket}/{b.prefix}"
    if command == "restore":
        if dump_url != "latest":
            store.parse_url(dump_url)
        dump = f"the latest dump under {where}" if dump_url == "latest" else dump_url
        return (f"restore: would load {dump} into {name}_restore, check its row counts and swap "
                f"it in with one RENAME TABLE (the live tables kept in {name}_replaced)")
    needs_backups(cfg, command, None)
    if command == "backup":
        return (f"backup: would dump {name} (mariadb-dump --single-transaction, gzip) to "
                f"{where}, then keep the newest {b.keep}")
    return (f"restore-drill: would load the latest dump under {where} into {name}_drill, compare "
            "its row counts with the dump's record and drop it")


# -- backup --

def needs_backups(cfg, command: str, platform: Platform | None) -> Platform:
    """The platform (given, or the config's) for a command that needs backups.enabled, which is
    checked first."""
    if not cfg.backups.enabled:
        raise ConfigError("backups.enabled", f"is false in the config: `{command}` needs backups.bucket")
    return platform or platforms.get(cfg.platform)


def backup(cfg, platform: Platform | None = None, *, s3=None, state_file: str = state.BACKUP_FILE) -> dict:
    platform = needs_backups(cfg, "backup", platform)
    b, db = cfg.backups, cfg.database
    s3 = s3 or store.client()
    key = store.new_key(b.prefix, db.name)
    record = {"started": _now(), "ok": False, "url": f"s3://{b.bucket}/{key}", "error": None,
              "bytes": None, "tables": None, "deleted": []}
    # When backups began here: `status` expects a verified restore within two drill periods of it.
    record["first_started"] = (state.read_json(state_file) or {}).get("first_started") or record["started"]
    Path(state_file).parent.mkdir(parents=True, exist_ok=True)
    with backup_lock(LOCK_WAIT):  # a backup and a drill whose timers meet: one waits
        return _recorded(state_file, record, lambda: _backup(cfg, platform, s3, key, record))


def _backup(cfg, platform, s3, key: str, record: dict) -> None:
    b, db = cfg.backups, cfg.database
    login = database.dump_login(cfg, platform)
    with database.session(login, "listing the app database's triggers") as cur:
        if names := database.triggers(cur, db.name):
            log.warning(f"the dump leaves out the triggers of {db.name} ({', '.join(names)}): "
                        "a restore does not load triggers; recreate them by hand after one")
    with Cleanup() as undo:
        with database.option_file(login) as options, \
                subp.Streaming(database.dump_argv(options, db.name), stdout=True) as dump:
            reader = GzipReader(iter(dump.proc.stdout.readline, b""))
            store.upload(s3, b.bucket, key, reader, _tags(cfg))
            # Never leave a partial dump where a restore could pick it.
            undo.register(store.delete, s3, store.Dump(b.bucket, key, False))
            dump.finish(DUMP_TIMEOUT)
        if not reader.parser.complete:
            raise BackupError("mariadb-dump stopped before its last line: the dump is incomplete")
    sidecar = {"format": 1, "database": db.name, "key": key, "created": record["started"],
               "bytes": reader.size, "sha256": reader.sha256.hexdigest(),
               "tables": reader.parser.tables, "host": socket.gethostname()}
    store.put_sidecar(s3, b.bucket, key, sidecar, _tags(cfg))
    record.update(bytes=reader.size, tables=reader.parser.tables)
    log.info(f"{record['url']}: {reader.size} bytes, {len(reader.parser.tables)} tables, "
             f"{sum(reader.parser.tables.values())} rows")
    deleted = store.prune(s3, store.list_dumps(s3, b.bucket, b.prefix, db.name), b.keep)
    record["deleted"] = [d.url for d in deleted]
    for d in deleted:
        log.info(f"deleted {d.url} (keep {b.keep})")


# -- restore and drill --

def _latest(cfg, s3) -> store.Dump:
    """The app database's newest complete dump under backups.bucket and prefix."""
    b = cfg.backups
    if not b.bucket:
        raise BackupError("--dump latest needs backups.bucket in the config")
    complete = [d for d in store.list_dumps(s3, b.bucket, b.prefix, cfg.database.name) if d.complete]
    if not complete:
        raise BackupError(f"no complete dump of {cfg.database.name} under s3://{b.bucket}/{b.prefix}")
    return complete[-1]


def _load(cfg, platform, s3, dump: store.Dump, target: str, sidecar: dict | None) -> dict[str, int]:
    """Load the dump into `target` (recreated empty); its row counts, checked against the
    sidecar's. Raises BackupError when anything is wrong: the caller drops `target`.
    The admin login only makes the empty schema; the client reads only the statements the
    parser checked, as the restore user, in its sandbox."""
    database.require_sandbox()
    loader = database.load_login(cfg, platform)
    with database.session(database.admin_login(cfg, platform), f"creating {target}") as cur:
        database.create_empty(cur, target, cfg.database.name)
    log.info(f"loading {dump.url} into {target}")
    text = gunzip_statements(store.chunks(s3, dump.bucket, dump.key), (sidecar or {}).get("sha256"))
    with database.option_file(loader) as options, \
            subp.Streaming(database.load_argv(options, target), stdin=True) as load:
        try:
            for piece in text:
                load.proc.stdin.write(piece)
        except BrokenPipeError:  # mariadb stopped at an error: finish() says which
            for _ in text:  # still check the rest: a refused statement says more than the error
                pass
        load.finish(LOAD_TIMEOUT)
    with database.session(loader, f"counting the rows in {target}") as cur:
        counts = database.row_counts(cur, target)
    if sidecar is not None:
        expected = {str(t): n for t, n in sidecar["tables"].items()}
        wrong = [f"{t}: {counts.get(t, 'missing')} rows, the dump recorded {n}"
                 for t, n in sorted(expected.items()) if counts.get(t) != n]
        wrong += [f"{t}: not in the dump's record" for t in sorted(set(counts) - set(expected))]
        if wrong:
            raise BackupError("the restored row counts differ from the dump's record: " + "; ".join(wrong))
    return counts


def _drop_quietly(cfg, platform, name: str) -> None:
    try:
        with database.session(database.admin_login(cfg, platform), f"dropping {name}") as cur:
            database.drop(cur, name)
    except BingoHostError as exc:  # the original failure matters more
        log.warning("%s", exc)


def restore(cfg, platform, dump_url: str, *, s3=None) -> str:
    """Replace the app database's tables with the dump's; returns the dump's URL."""
    # A named dump's URL is checked before the lock is taken: a bad one changes nothing (exit 2).
    named = None if dump_url == "latest" else store.Dump(*store.parse_url(dump_url), True)
    s3 = s3 or store.client()
    names = database.side_names(cfg.database.name)
    with host_lock():
        why = deploy_record.blocker(deploy_record.load(), "")
        if why:
            raise BackupError(f"a deployment holds this host ({why}): restore after it")
        dump = named or _latest(cfg, s3)
        sidecar = store.get_sidecar(s3, dump.bucket, dump.key)
        if sidecar is None:
            log.warning(f"{dump.url} has no sidecar record: its row counts cannot be checked")
        try:
            counts = _load(cfg, platform, s3, dump, names["restore"], sidecar)
            with database.session(database.admin_login(cfg, platform), "swapping the tables in") as cur:
                database.swap(cur, cfg.database.name, names["restore"], names["replaced"])
        finally:
            _drop_quietly(cfg, platform, names["restore"])
    log.info(f"restored {dump.url} into {cfg.database.name}: {len(counts)} tables, {sum(counts.values())} rows; "
             f"the tables it replaced are in {names['replaced']} until the next restore")
    return dump.url


def drill(cfg, platform: Platform | None = None, *, s3=None, state_file: str = state.DRILL_FILE) -> dict:
    """Restore the latest complete dump into a scratch database and compare its row counts."""
    platform = needs_backups(cfg, "restore-drill", platform)
    s3 = s3 or store.client()
    scratch = database.side_names(cfg.database.name)["drill"]
    record = {"started": _now(), "ok": False, "dump": None, "tables": None, "error": None}
    Path(state_file).parent.mkdir(parents=True, exist_ok=True)

    def drill_latest():
        dump = _latest(cfg, s3)
        record["dump"] = dump.url
        sidecar = store.get_sidecar(s3, dump.bucket, dump.key)
        if sidecar is None:
            raise BackupError(f"{dump.url}'s sidecar record is gone: nothing to compare with")
        try:
            record["tables"] = _load(cfg, platform, s3, dump, scratch, sidecar)
        finally:
            _drop_quietly(cfg, platform, scratch)
        log.info(f"drill: {dump.url} restored into {scratch}, {len(record['tables'])} tables match the "
                 f"dump's record; {scratch} dropped")

    with backup_lock(LOCK_WAIT):  # a backup and a drill whose timers meet: one waits
        return _recorded(state_file, record, drill_latest)
