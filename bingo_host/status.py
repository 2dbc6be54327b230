"""`bingo-host status`: is this bingo host healthy, and if not, why?

Cheap on a 0.5 GiB instance: no boto3, no jinja2; one `systemctl show` for every unit; psutil
for disks and memory; one MariaDB connection; two or three HTTP requests to the local nginx.

The report is a plain dict whose shape is documented (and tested) by docs/status-schema.json;
``SCHEMA_VERSION`` changes only when a key is removed or changes meaning (keys may be added).
Every check appends its findings to ``problems``; any problem makes the verdict "degraded".
A check that crashes becomes a problem naming it, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from typing import Any, Callable

from . import layout, state, subp
from .config import Config
from .facts.platforms import Platform

SCHEMA_VERSION = 1
USED_WARN_PERCENT = 85.0  # data volume or root file system at or above this: degraded
CERT_WARN_DAYS = 14  # certbot renews at 30 days left; under 14 renewal has been failing
HTTP_TIMEOUT = 3.0
DB_TIMEOUT = 3
SNAPSHOT_PERIOD_HOURS = {"hourly": 1, "daily": 24, "weekly": 168, "monthly": 744}
NO_RELEASE_STATUSES = (502, 503, 504)  # the API behind the placeholder page: no app yet

SHOW_PROPS = "Id,LoadState,ActiveState,SubState,UnitFileState,NextElapseUSecRealtime"


class Report:
    def __init__(self):
        self.data: dict[str, Any] = {}
        self.problems: list[dict[str, str]] = []

    def problem(self, check: str, message: str, severity: str = "error") -> None:
        self.problems.append({"check": check, "severity": severity, "message": message})


# -- services --

def _unix_time(value: str) -> str | None:
    """A `systemctl show` timestamp as ISO time: '@SECONDS' where --timestamp=unix is honoured,
    else 'Sat 2026-11-28 00:14:31 UTC' (systemctl runs with TZ=UTC); None when empty or 'n/a'."""
    value = value.strip()
    try:
        if value.startswith("@"):
            return _iso(float(value[1:]))
        if value.endswith(" UTC"):
            parsed = dt.datetime.strptime(value.split(" ", 1)[1], "%Y-%m-%d %H:%M:%S UTC")
            return parsed.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        return None
    return None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def service_list(cfg: Config, platform: Platform, https_on: bool) -> list[tuple[str, str, bool]]:
    """(name, unit, required) for every unit status reports."""
    units = [("nginx", "nginx.service", True)]
    if cfg.database.local:
        units.append(("mariadb", f"{platform.mariadb_service}.service", True))
    units += [
        ("uwsgi", f"{layout.UWSGI_SERVICE}.service", True),
        ("snapshot-timer", f"{layout.SNAPSHOT_UNIT}.timer", cfg.snapshots.enabled),
        ("renew-timer", f"{layout.RENEW_UNIT}.timer", https_on),
        ("codedeploy-agent", "codedeploy-agent.service", False),  # required once installed
    ]
    return units


def check_services(r: Report, cfg: Config, platform: Platform, https_on: bool) -> None:
    from .facts.systemd import parse_show

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
        elif active not in ("active", "reloading"):
            r.problem(f"services.{name}", f"{unit} is {active}"
                      + (f" ({entry['sub']})" if entry["sub"] and entry["sub"] != active else ""))
        elif enabled not in ("enabled", "enabled-runtime", "static", "alias"):
            r.problem(f"services.{name}", f"{unit} is running but {enabled or 'not enabled'}: "
                                          "it will not start at boot", "warning")
    r.data["services"] = services


# -- storage and memory --

def _usage(path: str) -> dict[str, Any]:
    import psutil

    u = psutil.disk_usage(path)
    return {"size_bytes": u.total, "used_bytes": u.used, "used_percent": round(u.percent, 1)}


def _mount_of(path: str) -> dict[str, str] | None:
    import psutil

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


def check_memory(r: Report) -> None:
    import psutil

    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    r.data["memory"] = {"total_bytes": vm.total, "available_bytes": vm.available,
                        "used_percent": round(vm.percent, 1)}
    r.data["swap"] = {"total_bytes": sw.total, "used_bytes": sw.used,
                      "used_percent": round(sw.percent, 1) if sw.total else 0.0}


# -- database --

def app_password(cfg: Config) -> str | None:
    """The app's database password as the app sees it; never printed."""
    from . import secrets
    from .config import is_reference

    source = cfg.database.password
    if source == "generate":
        found = secrets.read_file(layout.PASSWORD_FILE)
        if found:
            return found
    elif not is_reference(source):
        return source
    import configparser  # ssm:/secretsmanager: read what bootstrap rendered, not AWS (no boto3)

    ini = configparser.ConfigParser()  # with interpolation, as the app reads it ('%%' is '%')
    try:
        ini.read(f"{cfg.app.root}/shared/bingo.ini")
        return ini.get("database", "passwd", fallback=None)
    except (OSError, configparser.Error):
        return None


def check_database(r: Report, cfg: Config, platform: Platform) -> None:
    db = cfg.database
    where = f"socket {platform.mariadb_socket}" if db.local else f"{db.host}:{db.port}"
    entry = {"mode": "local" if db.local else "external", "endpoint": where, "name": db.name,
             "user": db.user, "reachable": False, "latency_ms": None, "error": None}
    r.data["database"] = entry
    password = app_password(cfg)
    if password is None:
        entry["error"] = "no app password found (db-password or bingo.ini): run bootstrap"
        r.problem("database", entry["error"])
        return
    from .facts.mariadb import connect

    start = time.monotonic()
    try:
        conn = connect(platform.mariadb_socket if db.local else None, db.user, password, host=db.host,
                       port=db.port, database=db.name, timeout=DB_TIMEOUT, read_timeout=DB_TIMEOUT,
                       write_timeout=DB_TIMEOUT)
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


# -- release, snapshot, certificate --

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
    from .deploy.releases import PLACEHOLDER, Paths, current_name, read_record, releases

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
    entry = {"time": _iso(ts) if ts else None,
             "age_hours": round((time.time() - ts) / 3600, 1) if ts else None,
             "ok": ok, "snapshot_ids": ids,
             "freeze_ms": freeze if isinstance(freeze, (int, float)) and not isinstance(freeze, bool) else None,
             "error": error}
    r.data["snapshot"] = entry
    if not ok:
        r.problem("snapshot", f"the last snapshot run failed: {error or 'see journalctl -u bingo-host-snapshot'}")
    period = SNAPSHOT_PERIOD_HOURS.get(cfg.snapshots.schedule)
    if ok and period and entry["age_hours"] is not None and entry["age_hours"] > 2 * period + 1:
        r.problem("snapshot", f"the last snapshot is {entry['age_hours']:.0f} h old "
                              f"(schedule {cfg.snapshots.schedule})", "warning")


def cert_not_after(path: str) -> float:
    """notAfter of the first certificate in a PEM file, as a POSIX time."""
    import ssl

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
    entry.update(not_after=_iso(not_after), days_left=round(days, 1))
    if days < 0:
        r.problem("certificate", f"the certificate for {domain} expired {-days:.0f} days ago")
    elif days < CERT_WARN_DAYS:
        r.problem("certificate", f"the certificate for {domain} expires in {days:.0f} days: renewal is "
                                 f"failing (journalctl -u {layout.RENEW_UNIT})", "warning")
    return True


# -- HTTP through nginx --

def check_http(r: Report, cfg: Config, tls_domain: str | None) -> None:
    """The index and the app's health check through nginx, by probe.py's rule (the one
    ValidateService and the load balancer use); with HTTPS, the plain-HTTP redirect too."""
    from .facts import probe

    no_release = r.data.get("release", {}).get("placeholder", False) or \
        r.data.get("release", {}).get("current") is None
    checks = []
    for kind, answer in (("static", probe.index(cfg, tls_domain, HTTP_TIMEOUT)),
                         ("health", probe.health(cfg, tls_domain, HTTP_TIMEOUT))):
        entry = {"kind": kind, "url": answer.url, "status": answer.status, "ok": answer.ok,
                 "note": None, "error": answer.error}
        if not answer.ok and kind == "health" and no_release and answer.status in NO_RELEASE_STATUSES:
            entry.update(ok=True, note="no release yet")
        checks.append(entry)
        if not entry["ok"]:
            r.problem(f"http.{kind}", f"GET {answer.url} through nginx: {answer.why()}")
    if tls_domain:
        host = probe.host_header(cfg, tls_domain)
        answer = probe.get("/", host, tls=False, timeout=HTTP_TIMEOUT)
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
    from .facts import platforms

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
    guarded("release", lambda: check_release(r, cfg))
    guarded("snapshot", lambda: check_snapshot(r, cfg))
    guarded("http", lambda: check_http(r, cfg, tls_domain))
    for key, empty in (("services", []), ("storage", {"data_volume": None, "root": None}),
                       ("memory", None), ("swap", None), ("database", None), ("release", None),
                       ("snapshot", None), ("http", [])):
        r.data.setdefault(key, empty)
    return {
        "schema_version": SCHEMA_VERSION,
        "host": socket.gethostname(),
        "platform": platform.name,
        "time": _iso(time.time()),
        "verdict": "degraded" if r.problems else "healthy",
        "problems": r.problems,
        **r.data,
        "took_ms": round((time.monotonic() - started) * 1000, 1),
    }


# -- human output --

def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


def render_text(report: dict[str, Any], color: bool = False) -> str:
    def paint(text: str, fg: str) -> str:
        if not color:
            return text
        import click

        return click.style(text, fg=fg, bold=fg == "red")

    def good(ok: bool, text: str, warn: bool = False) -> str:
        return paint(text, "green" if ok else ("yellow" if warn else "red"))

    flagged = {p["check"].split(".")[0] for p in report["problems"]}
    rows: list[tuple[str, str]] = []
    for s in report["services"]:
        running = s["active"] in ("active", "reloading")
        state_text = f"{s['active']:<9} {s['enabled'] or '-':<9}"
        if not s["required"] and not running:
            state_text += "  (not in use)"
        elif s["next_run"]:
            state_text += f"  next {s['next_run']}"
        rows.append((f"{s['name']}", good(running or not s["required"], state_text)))
    st = report["storage"]
    dv = st.get("data_volume")
    if dv is not None:
        if dv["mounted"]:
            rows.append(("data volume", good(dv["used_percent"] < USED_WARN_PERCENT,
                         f"{dv['device']} on {dv['mountpoint']} ({dv['filesystem']}), "
                         f"{_size(dv['size_bytes'])}, {dv['used_percent']:.0f}% used", warn=True)))
        else:
            rows.append(("data volume", good(False, f"NOT MOUNTED at {dv['mountpoint']}")))
    if st.get("root"):
        rt = st["root"]
        rows.append(("root fs", good(rt["used_percent"] < USED_WARN_PERCENT,
                                     f"{_size(rt['size_bytes'])}, {rt['used_percent']:.0f}% used", warn=True)))
    if report["memory"]:
        m, sw = report["memory"], report["swap"]
        rows.append(("memory", f"{_size(m['total_bytes'])}, {m['used_percent']:.0f}% used; swap "
                               f"{_size(sw['total_bytes'])}, {sw['used_percent']:.0f}% used"))
    db = report["database"]
    if db:
        text = (f"{db['name']} as {db['user']} via {db['endpoint']}: "
                + (f"reachable ({db['latency_ms']:.0f} ms)" if db["reachable"] else f"UNREACHABLE: {db['error']}"))
        rows.append(("database", good(db["reachable"], text)))
    rel = report["release"]
    if rel:
        if rel["placeholder"]:
            text = "none deployed yet (placeholder page)"
        elif rel["current"]:
            text = (f"{rel['current']}" + (f", deployed {rel['deployed_at']}" if rel["deployed_at"] else "")
                    + (f" from {rel['source']}" if rel["source"] else "")
                    + f"; {rel['older_kept']} older kept")
        elif rel["path"]:
            text = f"broken: current -> {rel['path']}"
        else:
            text = "missing: no current link"
        rows.append(("release", good("release" not in flagged, text)))
    snap = report["snapshot"]
    if snap:
        text = (f"{snap['time'] or '?'} ({snap['age_hours']} h ago), "
                + (f"{len(snap['snapshot_ids'])} snapshot(s)" if snap["ok"] else f"FAILED: {snap['error']}")
                + (f", frozen {snap['freeze_ms']:.0f} ms" if snap["freeze_ms"] is not None else ""))
        rows.append(("last snapshot", good("snapshot" not in flagged, text, warn=snap["ok"])))
    else:
        rows.append(("last snapshot", "none yet"))
    cert = report["certificate"]
    if cert:
        text = (f"{cert['domain']}, expires {cert['not_after']} ({cert['days_left']:.0f} days)"
                if cert["days_left"] is not None else f"{cert['domain']}: missing")
        rows.append(("certificate", good("certificate" not in flagged, text, warn=True)))
    else:
        rows.append(("certificate", "none (HTTPS not enabled)"))
    for h in report["http"]:
        text = f"GET {h['url']} -> {h['status'] or h['error']}" + (f" ({h['note']})" if h["note"] else "")
        rows.append((f"http {h['kind']}", good(h["ok"], text)))

    width = max(len(k) for k, _ in rows)
    lines = [f"bingo-host status: {report['host']} ({report['platform']}) at {report['time']}", ""]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    if report["verdict"] == "healthy":
        lines.append(paint("verdict: HEALTHY", "green"))
    else:
        n = len(report["problems"])
        lines.append(paint(f"verdict: DEGRADED ({n} problem{'s' if n != 1 else ''})", "red"))
        for p in report["problems"]:
            lines.append(f"  - {p['check']}: " + paint(p["message"], "red" if p["severity"] == "error" else "yellow"))
    return "\n".join(lines)
