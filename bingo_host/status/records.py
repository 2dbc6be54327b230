"""Status checks on what other commands recorded: the serving release, the last snapshot,
backup, restore drill, restore and security update run, and the certificate. They read files,
not services, and a hand-edited file must not crash them.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import time
from typing import Any

from .. import layout, restore_record, state, subp
from ..config import Config
from ..deploy.releases import PLACEHOLDER, Paths, current_name, read_record, releases
from .report import Report

CERT_WARN_DAYS = 14  # certbot renews at 30 days left; under 14 renewal has been failing
SNAPSHOT_PERIOD_HOURS = {"hourly": 1, "daily": 24, "weekly": 168, "monthly": 744}


def overdue_hours(schedule: str) -> int | None:
    """Age (hours) past which a scheduled run is late: two periods and an hour of slack; None for
    a schedule with no fixed period. The CloudFormation alarms use the same figure."""
    period = SNAPSHOT_PERIOD_HOURS.get(schedule)
    return 2 * period + 1 if period else None


def iso(ts: float) -> str:
    """A POSIX time as the report writes every time: ISO 8601, UTC, to the second."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def _source(record: dict) -> str | None:
    """What a release came from, from its record's `bundle` (deploy/releases.py, schema 1)."""
    bundle = record.get("bundle")
    if not isinstance(bundle, dict):
        return bundle if isinstance(bundle, str) and bundle else None
    kind = bundle.get("type")
    if kind == "s3" and bundle.get("bucket") and bundle.get("key"):
        version = f" (version {bundle['version']})" if bundle.get("version") else ""
        return f"s3://{bundle['bucket']}/{bundle['key']}{version}"
    if kind == "file" and bundle.get("path"):
        return f"{bundle['path']}"
    return None


def check_release(r: Report, cfg: Config) -> None:
    """The serving release, read through the deploy module's record functions."""
    paths = Paths(cfg.app.root)
    complete = [name for name, _ in releases(paths)]
    entry = {"current": None, "placeholder": False, "path": None, "deployed_at": None, "source": None,
             "releases": len(complete), "older_kept": 0}
    r.data["release"] = entry
    name = current_name(paths)
    if name is None:
        r.problem("release", f"{paths.current} is missing: run `bingo-host bootstrap`")
        return
    path = os.path.normpath(os.path.join(paths.root, os.readlink(paths.current)))
    entry["path"] = path
    if not os.path.isdir(path):
        r.problem("release", f"{paths.current} points at {path}, which does not exist")
        return
    if name == PLACEHOLDER:
        entry["placeholder"] = True
        return
    entry["current"] = name
    entry["older_kept"] = len([n for n in complete if n != name])
    record = read_record(path) or {}
    deployed = record.get("activated_at") or record.get("created_at")
    entry["deployed_at"] = deployed if isinstance(deployed, str) else None
    entry["source"] = _source(record)
    failed = record.get("failed")
    if isinstance(failed, dict):
        r.problem("release", f"the serving release {name} is marked failed "
                             f"({failed.get('event', '?')}: {failed.get('reason', '?')})")


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _when(ts: float | None) -> dict:
    """A record's time and age as the report shows them (both None when the record has none)."""
    return {"time": iso(ts) if ts else None,
            "age_hours": round((time.time() - ts) / 3600, 1) if ts else None}


def check_snapshot(r: Report, cfg: Config, path: str = state.SNAPSHOT_FILE) -> None:
    last = state.read_json(path)
    if not cfg.snapshots.enabled or last is None:
        r.data["snapshot"] = None
        return
    when = last.get("finished") or last.get("started") or last.get("time")
    ts = _parse_time(when)
    snaps = last.get("snapshots") if isinstance(last.get("snapshots"), list) else []
    ids = [s.get("snapshot_id") for s in snaps if isinstance(s, dict) and isinstance(s.get("snapshot_id"), str)]
    ids += [s for s in snaps if isinstance(s, str)]
    freeze = last.get("freeze_ms")
    error = last.get("error") if isinstance(last.get("error"), str) else None
    ok = last.get("ok") if isinstance(last.get("ok"), bool) else error is None
    entry = {**_when(ts), "ok": ok, "snapshot_ids": ids,
             "freeze_ms": freeze if isinstance(freeze, (int, float)) and not isinstance(freeze, bool) else None,
             "error": error}
    r.data["snapshot"] = entry
    if not ok:
        r.problem("snapshot", f"the last snapshot run failed: {error or 'see journalctl -u bingo-host-snapshot'}")
    late = overdue_hours(cfg.snapshots.schedule)
    if ok and late and entry["age_hours"] is not None and entry["age_hours"] > late:
        r.problem("snapshot", f"the last snapshot is {entry['age_hours']:.0f} h old "
                              f"(schedule {cfg.snapshots.schedule})", "warning")


def _last_run(path: str) -> dict | None:
    """A backup's or drill's record (backup/run.py) as the report shows it; None when none."""
    last = state.read_json(path)
    if last is None:
        return None
    ts = _parse_time(last.get("finished") or last.get("started"))
    error = last.get("error") if isinstance(last.get("error"), str) else None
    dump = last.get("url") or last.get("dump")  # the backup's upload, the drill's source
    return {**_when(ts), "ok": last.get("ok") is True, "dump": dump if isinstance(dump, str) else None,
            "error": error}


def check_backups(r: Report, cfg: Config, backup_path: str = state.BACKUP_FILE,
                  drill_path: str = state.DRILL_FILE) -> None:
    """The last backup and the last verified restore (a drill): degraded when either failed, or
    is older than two of its periods (a drill that never ran counts only once a backup exists)."""
    if not cfg.backups.enabled:
        r.data["backups"] = None
        return
    b = cfg.backups
    last, drill = _last_run(backup_path), _last_run(drill_path)
    r.data["backups"] = {"last_backup": last, "last_verified_restore": drill}
    for entry, check, schedule, what in ((last, "backups.last_backup", b.schedule, "backup"),
                                         (drill, "backups.restore_drill", b.drill_schedule, "restore drill")):
        if entry is not None and not entry["ok"]:
            r.problem(check, f"the last {what} failed: {entry['error'] or 'see its journal'}")
        late = overdue_hours(schedule)
        age = entry["age_hours"] if entry else None
        if entry and entry["ok"] and late and (age is None or age > late):
            r.problem(check, f"the last {what} is {age or '?'} h old (schedule {schedule})", "warning")
    if drill is None and last is not None and last["ok"]:
        late = overdue_hours(b.drill_schedule)
        first = _parse_time(_first_backup(backup_path))
        if late and first and (time.time() - first) / 3600 > late:
            r.problem("backups.restore_drill", "no restore drill has verified a backup in two drill "
                                               f"periods (schedule {b.drill_schedule})", "warning")


def _first_backup(path: str) -> str | None:
    """When backups began on this host: the first run's time, kept in the record."""
    found = (state.read_json(path) or {}).get("first_started")
    return found if isinstance(found, str) else None


def check_restore(r: Report, record_path: str | None = None, last_path: str | None = None) -> None:
    """An unfinished `restore --snapshot` (killed, or its host rebooted mid-way: the data volume
    may be detached and the app stopped, and only a re-run finishes it) and the last one's
    outcome. None when no restore ever ran here."""
    unfinished = state.read_json(record_path or restore_record.RECORD_FILE)
    last = state.read_json(last_path or restore_record.LAST_FILE)
    if not isinstance(unfinished, dict) or not isinstance(unfinished.get("snapshot_id"), str):
        unfinished = None
    if not isinstance(last, dict):
        last = None
    if unfinished is None and last is None:
        r.data["restore"] = None
        return

    def text(entry: dict, key: str) -> str | None:
        return entry.get(key) if isinstance(entry.get(key), str) else None

    r.data["restore"] = {
        "unfinished": None if unfinished is None else {
            "snapshot_id": unfinished["snapshot_id"], "started_at": text(unfinished, "started_at"),
            "direction": text(unfinished, "direction")},
        "last": None if last is None else {
            "snapshot_id": text(last, "snapshot_id"), "finished_at": text(last, "finished_at"),
            "ok": last.get("ok") is True, "new_volume": text(last, "new_volume"),
            "old_volume": text(last, "old_volume"), "error": text(last, "error")}}
    if unfinished:
        r.problem("restore", f"a restore of {unfinished['snapshot_id']} is unfinished: run `bingo-host "
                             f"restore --snapshot {unfinished['snapshot_id']}` again to finish it")
    elif not r.data["restore"]["last"]["ok"]:
        last = r.data["restore"]["last"]
        r.problem("restore", f"the last restore ({last['snapshot_id']}) failed and was rolled back to "
                             f"{last['old_volume']}: {last['error'] or 'see the journal'}", "warning")


def check_patches(r: Report, platform, path: str | None = None) -> None:
    """Whether a reboot is needed (the platform's marker in /run, set by package scripts or by
    `bingo-host patch`), and how the last security update run went."""
    last = state.read_json(path or state.PATCH_FILE) or {}
    deferred = last.get("restart_deferred") if isinstance(last.get("restart_deferred"), list) else []
    entry = {"reboot_required": os.path.exists(platform.reboot_marker),
             "last_run": last.get("finished_at") if isinstance(last.get("finished_at"), str) else None,
             "ok": last.get("ok") if isinstance(last.get("ok"), bool) else None,
             "error": last.get("error") if isinstance(last.get("error"), str) else None,
             "restart_deferred": [s for s in deferred if isinstance(s, str)]}
    r.data["patches"] = entry
    if entry["reboot_required"]:
        r.problem("patches.reboot", f"a reboot is needed to finish applying updates "
                                    f"({platform.reboot_marker} exists)", "warning")
    if entry["ok"] is False:
        r.problem("patches", f"the last security update run failed: "
                             f"{entry['error'] or 'see journalctl -u bingo-host-patch'}", "warning")


def cert_not_after(path: str) -> float:
    """notAfter of the first certificate in a PEM file, as a POSIX time."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is not None:
        return ssl.cert_time_to_seconds(decode(path)["notAfter"])
    out = subp.run(["openssl", "x509", "-enddate", "-noout", "-in", path], timeout=10).stdout
    return ssl.cert_time_to_seconds(out.strip().partition("=")[2])


def check_certificate(r: Report, cfg: Config) -> bool:
    """Returns whether HTTPS is on (a certificate exists for the HTTPS domain)."""
    domain = state.https_domain(cfg)
    if domain is None:
        r.data["certificate"] = None
        return False
    path = state.cert_path(domain)
    entry = {"domain": domain, "path": path, "not_after": None, "days_left": None}
    r.data["certificate"] = entry
    if not os.path.exists(path):
        r.problem("certificate", f"HTTPS is configured for {domain} but {path} is missing: "
                                 "run `bingo-host enable-https`")
        return False
    try:
        not_after = cert_not_after(path)
    except Exception as exc:
        r.problem("certificate", f"cannot read {path}: {exc}")
        return True
    days = (not_after - time.time()) / 86400
    entry.update(not_after=iso(not_after), days_left=round(days, 1))
    if days < 0:
        r.problem("certificate", f"the certificate for {domain} expired {-days:.0f} days ago")
    elif days < CERT_WARN_DAYS:
        r.problem("certificate", f"the certificate for {domain} expires in {days:.0f} days: renewal is "
                                 f"failing (journalctl -u {layout.RENEW_UNIT})", "warning")
    return True
