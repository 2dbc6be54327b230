"""The human `bingo-host status`: one row a check, then the verdict and every problem.

It reads nothing but the report dict that --json prints, so the two outputs cannot disagree.
"""

from __future__ import annotations

from typing import Any

import click

from ..facts.systemd import RUNNING
from .checks import USED_WARN_PERCENT


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
        return click.style(text, fg=fg, bold=fg == "red")

    def good(ok: bool, text: str, warn: bool = False) -> str:
        return paint(text, "green" if ok else ("yellow" if warn else "red"))

    flagged = {p["check"].split(".")[0] for p in report["problems"]}
    rows: list[tuple[str, str]] = []
    for s in report["services"]:
        running = s["active"] in RUNNING
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
        cap = " (cgroup limit)" if m.get("limit") == "cgroup" else ""
        rows.append(("memory", f"{_size(m['total_bytes'])}{cap}, {m['used_percent']:.0f}% used; swap "
                               f"{_size(sw['total_bytes'])}, {sw['used_percent']:.0f}% used"))
    db = report["database"]
    if db:
        text = (f"{db['name']} as {db['user']} via {db['endpoint']}: "
                + (f"reachable ({db['latency_ms']:.0f} ms)" if db["reachable"] else f"UNREACHABLE: {db['error']}"))
        unknown = db.get("unknown_accounts")
        if unknown:
            text += f"; {len(unknown)} account(s) bingo-host did not create"
        rows.append(("database", good(db["reachable"] and not unknown, text, warn=db["reachable"])))
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
    backups = report.get("backups")
    if backups:
        checks = {p["check"] for p in report["problems"]}
        for label, key, check in (("last backup", "last_backup", "backups.last_backup"),
                                  ("last verified restore", "last_verified_restore", "backups.restore_drill")):
            entry = backups[key]
            if entry is None:
                rows.append((label, "none yet"))
                continue
            text = (f"{entry['time'] or '?'} ({entry['age_hours']} h ago), "
                    + (f"{entry['dump']}" if entry["ok"] else f"FAILED: {entry['error']}"))
            rows.append((label, good(check not in checks, text, warn=entry["ok"])))
    restore = report.get("restore")
    if restore and restore["unfinished"]:
        rows.append(("restore", good(False, f"UNFINISHED: {restore['unfinished']['snapshot_id']} "
                                            "(run the same restore again)")))
    elif restore:
        last = restore["last"]
        rows.append(("last restore", good(last["ok"], f"{last['snapshot_id']} at {last['finished_at']}"
                                          + ("" if last["ok"] else f", rolled back: {last['error']}"),
                                          warn=True)))
    patches = report.get("patches")
    if patches:
        text = ("REBOOT NEEDED to finish applying updates" if patches["reboot_required"]
                else "no reboot needed")
        if patches["last_run"]:
            text += f"; last run {patches['last_run']}" + ("" if patches["ok"] else f" FAILED: {patches['error']}")
        rows.append(("patches", good("patches" not in flagged, text, warn=True)))
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
