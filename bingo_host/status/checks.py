"""The live checks of a status report (units, disks, memory, HTTP; the database's are in
database.py, what other commands left behind in records.py), and `collect`, which runs them all.

Each check writes its section of ``Report.data`` and appends what is wrong to ``problems``; any
problem makes the verdict "degraded". A check that crashes becomes a problem naming it, never a
traceback, so one broken check cannot hide the others.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from typing import Any, Callable

import psutil

from .. import layout, sizing_record, state, subp
from ..config import Config
from ..facts import http, memory, platforms
from ..facts.platforms import Platform
from ..facts.systemd import ENABLED, RUNNING, parse_show
from .database import check_accounts, check_database
from .records import (check_backups, check_certificate, check_patches, check_release, check_restore,
                      check_snapshot, iso)
from .report import Report

SCHEMA_VERSION = 1  # docs/status-schema.json: changes only when a key is removed or changes meaning
USED_WARN_PERCENT = 85.0  # data volume or root file system at or above this: degraded
HTTP_TIMEOUT = 3.0
NO_RELEASE_STATUSES = (502, 503, 504)  # the API behind the placeholder page: no app yet

SHOW_PROPS = "Id,LoadState,ActiveState,SubState,UnitFileState,NextElapseUSecRealtime"


# -- services --

def _unix_time(value: str) -> str | None:
    """A `systemctl show` timestamp as ISO time: '@SECONDS' where --timestamp=unix is honoured,
    else 'Sat 2026-11-28 00:14:31 UTC' (systemctl runs with TZ=UTC); None when empty or 'n/a'."""
    value = value.strip()
    try:
        if value.startswith("@"):
            return iso(float(value[1:]))
        if value.endswith(" UTC"):
            parsed = dt.datetime.strptime(value.split(" ", 1)[1], "%Y-%m-%d %H:%M:%S UTC")
            return parsed.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        return None
    return None


def service_list(cfg: Config, platform: Platform, https_on: bool) -> list[tuple[str, str, bool]]:
    """(name, unit, required) for every unit status reports."""
    units = [("nginx", "nginx.service", True)]
    if cfg.database.local:
        units.append(("mariadb", f"{platform.mariadb_service}.service", True))
    units += [
        ("uwsgi", f"{layout.UWSGI_SERVICE}.service", True),
        ("snapshot-timer", f"{layout.SNAPSHOT_UNIT}.timer", cfg.snapshots.enabled),
        ("renew-timer", f"{layout.RENEW_UNIT}.timer", https_on),
        ("backup-timer", f"{layout.DUMP_UNIT}.timer", cfg.backups.enabled),
        ("restore-drill-timer", f"{layout.DRILL_UNIT}.timer", cfg.backups.enabled),
        ("metrics-timer", f"{layout.METRICS_UNIT}.timer", cfg.metrics.enabled),
        ("patch-timer", f"{layout.PATCH_UNIT}.timer", cfg.patches.enabled),
        ("codedeploy-agent", "codedeploy-agent.service", False),  # required once installed
    ]
    return units


def check_services(r: Report, cfg: Config, platform: Platform, https_on: bool) -> None:
    wanted = service_list(cfg, platform, https_on)
    out = subp.run(["systemctl", "show", "--no-pager", "--timestamp=unix", "-p", SHOW_PROPS,
                    "--", *[u for _, u, _ in wanted]], timeout=20, env={"TZ": "UTC"}).stdout
    blocks_in_order = parse_show(out)
    blocks = {b.get("Id", ""): b for b in blocks_in_order}
    services = []
    for i, (name, unit, required) in enumerate(wanted):
        b = blocks.get(unit) or (blocks_in_order[i] if i < len(blocks_in_order) else {})
        load = b.get("LoadState", "")
        installed = load == "loaded"
        if name == "codedeploy-agent" and not installed:
            continue
        required = required or name == "codedeploy-agent"
        active = b.get("ActiveState", "") or "unknown"
        enabled = b.get("UnitFileState", "") or ("not-found" if not installed else "")
        entry = {"name": name, "unit": unit, "installed": installed, "active": active,
                 "sub": b.get("SubState", ""), "enabled": enabled, "required": required,
                 "next_run": _unix_time(b.get("NextElapseUSecRealtime", "")) if unit.endswith(".timer")
                 else None}
        services.append(entry)
        if not required:
            continue
        if not installed:
            r.problem(f"services.{name}", f"{unit} is not installed ({load or 'unknown'})")
        elif active not in RUNNING:
            r.problem(f"services.{name}", f"{unit} is {active}"
                      + (f" ({entry['sub']})" if entry["sub"] and entry["sub"] != active else ""))
        elif enabled not in ENABLED:
            r.problem(f"services.{name}", f"{unit} is running but {enabled or 'not enabled'}: "
                                          "it will not start at boot", "warning")
    r.data["services"] = services


# -- storage and memory --

def _usage(path: str) -> dict[str, Any]:
    u = psutil.disk_usage(path)
    return {"size_bytes": u.total, "used_bytes": u.used, "used_percent": round(u.percent, 1)}


def _mount_of(path: str) -> dict[str, str] | None:
    for p in psutil.disk_partitions(all=True):
        if p.mountpoint == path:
            return {"device": p.device, "filesystem": p.fstype}
    return None


def check_storage(r: Report, cfg: Config) -> None:
    root = {"mountpoint": "/", **_usage("/")}
    if root["used_percent"] >= USED_WARN_PERCENT:
        r.problem("storage.root", f"/ is {root['used_percent']:.0f}% full "
                                  f"(warning at {USED_WARN_PERCENT:.0f}%)", "warning")
    data = None
    if cfg.database.local:
        mp = cfg.volume.mountpoint
        mount = _mount_of(mp) if os.path.ismount(mp) else None
        if mount is None:
            data = {"mountpoint": mp, "mounted": False, "device": None, "filesystem": None,
                    "size_bytes": None, "used_bytes": None, "used_percent": None}
            r.problem("storage.data_volume", f"the data volume is not mounted at {mp}")
        else:
            data = {"mountpoint": mp, "mounted": True, **mount, **_usage(mp)}
            if data["used_percent"] >= USED_WARN_PERCENT:
                r.problem("storage.data_volume", f"the data volume ({mp}) is {data['used_percent']:.0f}% "
                                                 f"full (warning at {USED_WARN_PERCENT:.0f}%)", "warning")
    r.data["storage"] = {"data_volume": data, "root": root}


def check_memory(r: Report, root: str = "/", sizing_path: str = state.SIZING_FILE) -> None:
    """Memory against what the host may use (facts/memory.py, the figure 'auto' sizes from):
    RAM, or the cgroup limit when that is smaller, with the cgroup's own usage. Swap is the
    machine's."""
    mem = memory.read(root)
    used = memory.cgroup_used_bytes(mem) if mem.capped else None
    if used is None:
        vm = psutil.virtual_memory()
        total, available, percent, limit = vm.total, vm.available, vm.percent, "ram"
    else:
        total, limit = mem.usable_bytes, "cgroup"
        available = max(0, total - used)
        percent = min(100.0, 100.0 * used / total)
    sw = psutil.swap_memory()
    was = sizing_record.recorded(sizing_path)
    due = was and sizing_record.why_resize(was, sizing_record.current(root))
    r.data["memory"] = {"total_bytes": total, "available_bytes": available,
                        "used_percent": round(percent, 1), "limit": limit, "resize_due": due or None}
    if due:
        r.problem("memory.sizing", f"sized for {was.describe()}, but {due}: `bingo-host resize` sizes "
                                   f"it again (bingo-host-resize.service does at boot)", "warning")
    r.data["swap"] = {"total_bytes": sw.total, "used_bytes": sw.used,
                      "used_percent": round(sw.percent, 1) if sw.total else 0.0}


# -- HTTP through nginx --

def check_http(r: Report, cfg: Config, tls_domain: str | None) -> None:
    """The index and the app's health check through nginx, by facts/http.py's rule (the one
    ValidateService and the load balancer use); with HTTPS, the plain-HTTP redirect too."""
    no_release = r.data.get("release", {}).get("placeholder", False) or \
        r.data.get("release", {}).get("current") is None
    checks = []
    for kind, answer in (("static", http.index(cfg, tls_domain, HTTP_TIMEOUT)),
                         ("health", http.health(cfg, tls_domain, HTTP_TIMEOUT))):
        entry = {"kind": kind, "url": answer.url, "status": answer.status, "ok": answer.ok,
                 "note": None, "error": answer.error}
        if not answer.ok and kind == "health" and no_release and answer.status in NO_RELEASE_STATUSES:
            entry.update(ok=True, note="no release yet")
        checks.append(entry)
        if not entry["ok"]:
            r.problem(f"http.{kind}", f"GET {answer.url} through nginx: {answer.why()}")
    if tls_domain:
        host = http.host_header(cfg, tls_domain)
        answer = http.get("/", host, tls=False, timeout=HTTP_TIMEOUT)
        ok = answer.status == 301 and (answer.location or "").startswith(f"https://{host}/")
        checks.append({"kind": "redirect", "url": answer.url, "status": answer.status, "ok": ok,
                       "note": f"-> {answer.location}" if answer.location else None,
                       "error": answer.error})
        if not ok:
            r.problem("http.redirect", f"GET {answer.url} should redirect to https (301), got "
                                       f"{answer.status or answer.error}")
    r.data["http"] = checks


# -- the report --

def collect(cfg: Config, platform: Platform | None = None) -> dict[str, Any]:
    platform = platform or platforms.get(cfg.platform)
    r = Report()
    started = time.monotonic()

    def guarded(name: str, fn: Callable[[], Any], default=None):
        try:
            return fn()
        except Exception as exc:  # one broken check must not hide the others
            r.problem(name, f"the {name} check itself failed: {type(exc).__name__}: {exc}")
            return default

    https_on = guarded("certificate", lambda: check_certificate(r, cfg), False)
    r.data.setdefault("certificate", None)
    tls_domain = state.tls_domain(cfg) if https_on else None
    guarded("services", lambda: check_services(r, cfg, platform, https_on))
    guarded("storage", lambda: check_storage(r, cfg))
    guarded("memory", lambda: check_memory(r))
    guarded("database", lambda: check_database(r, cfg, platform))
    if cfg.database.local and r.data.get("database"):
        guarded("database.accounts", lambda: check_accounts(r, cfg, platform))
    guarded("release", lambda: check_release(r, cfg))
    guarded("snapshot", lambda: check_snapshot(r, cfg))
    guarded("backups", lambda: check_backups(r, cfg))
    guarded("patches", lambda: check_patches(r, platform))
    guarded("restore", lambda: check_restore(r))
    guarded("http", lambda: check_http(r, cfg, tls_domain))
    for key, empty in (("services", []), ("storage", {"data_volume": None, "root": None}),
                       ("memory", None), ("swap", None), ("database", None), ("release", None),
                       ("snapshot", None), ("backups", None), ("patches", None), ("restore", None),
                       ("http", [])):
        r.data.setdefault(key, empty)
    return {
        "schema_version": SCHEMA_VERSION,
        "host": socket.gethostname(),
        "platform": platform.name,
        "time": iso(time.time()),
        "verdict": "degraded" if r.problems else "healthy",
        "problems": r.problems,
        **r.data,
        "took_ms": round((time.monotonic() - started) * 1000, 1),
    }
