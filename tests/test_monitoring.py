"""The monitoring and timers steps' decisions (dry run, nothing written): the CloudWatch agent
installed, configured and started where the platform packages it, with its journal export timer;
skipped with the reason where it does not, off when asked; the metrics timer with metrics.enabled. The metrics timer's real run is in
test_patches.py (test host), the agent's config content in test_render.py."""

from __future__ import annotations

import pytest

from bingo_host.config_file import load_config_text
from bingo_host.context import Context
from bingo_host.converge.steps import monitoring, timers
from bingo_host.facts import platforms, systemd
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import resolve

GIB = 1 << 30


def run_step(monkeypatch, platform: str, text: str, mem: int = 4 * GIB) -> tuple[list[str], str]:
    monkeypatch.setattr(systemd, "states", lambda *units: {
        u: systemd.UnitState(u, "not-found", "inactive", "") for u in units})
    p = platforms.PLATFORMS[platform]
    facts = HostFacts(mem, 2)
    ctx = Context(resolve(load_config_text(text), p, facts), p, facts, dry_run=True)
    timers.converge(ctx)
    reason = monitoring.converge(ctx)
    return ctx.changes, reason


def test_agent_installed_configured_started_on_amazon_linux(monkeypatch):
    changes, _ = run_step(monkeypatch, "amzn2023", "metrics: {enabled: true}\ncloudwatch_agent: {enabled: true}\n")
    assert "install amazon-cloudwatch-agent" in changes
    assert "enable --now bingo-host-journal-export.timer" in changes
    assert "enable --now bingo-host-metrics.timer" in changes
    fetch = [c for c in changes if "fetch-config" in c]
    assert fetch and changes.index(fetch[0]) > changes.index("install amazon-cloudwatch-agent")


def test_agent_skipped_with_the_reason_on_debian(monkeypatch):
    changes, reason = run_step(monkeypatch, "debian12", "cloudwatch_agent: {enabled: true}\n")
    assert not any("cloudwatch" in c or "journal-export" in c or "metrics" in c for c in changes)
    assert "CloudWatch agent skipped: Debian 12 has no amazon-cloudwatch-agent package" in reason
    assert "metrics off" in reason


@pytest.mark.parametrize("text,mem", [("cloudwatch_agent: {enabled: false}\n", 4 * GIB), ("", GIB // 2)])
def test_agent_off_when_asked_and_by_default_on_a_nano(monkeypatch, text, mem):
    changes, reason = run_step(monkeypatch, "amzn2023", text, mem)
    assert not any("cloudwatch" in c or "journal-export" in c for c in changes)
    assert "CloudWatch agent off" in reason


# -- the journal export the agent reads, run for real on the (Debian) test host: the unit is
#    Amazon Linux's, but journalctl with a cursor file behaves the same on both --

def test_journal_export_appends_each_entry_once(bootstrapped):
    import time

    from bingo_host.render import render_all

    host = bootstrapped.host
    cfg = load_config_text("cloudwatch_agent: {enabled: true}\n")
    amzn, facts = platforms.PLATFORMS["amzn2023"], HostFacts(4 * GIB, 2)
    unit = next(f for f in render_all(resolve(cfg, amzn, facts), amzn, facts)
                if f.template == "journal-export.service")
    path = "/etc/systemd/system/bingo-host-journal-export.service"

    def export_and_read(marker: str) -> str:
        host.run(["logger", "-t", "bingo-host", marker])
        deadline = time.monotonic() + 20
        while True:  # journald takes the syslog message asynchronously
            host.run(["systemctl", "start", "bingo-host-journal-export.service"], timeout=60)
            text = host.read_file("/var/log/bingo-host/bingo-host.log")
            if marker in text or time.monotonic() > deadline:
                return text
            time.sleep(0.5)

    host.put_file(path, unit.content)
    try:
        host.run(["systemctl", "daemon-reload"])
        first = export_and_read("journal-export-test-1")
        assert "journal-export-test-1" in first
        second = export_and_read("journal-export-test-2")
        assert second.count("journal-export-test-1") == 1 and "journal-export-test-2" in second
        assert "uwsgi" in host.read_file("/var/log/bingo-host/uwsgi.log").lower()
        modes = host.run(["stat", "-c", "%a", "/var/log/bingo-host/bingo-host.log",
                          "/var/log/bingo-host/uwsgi.log"]).stdout.split()
        assert modes == ["640", "640"]  # the app's tracebacks are not for every local user
    finally:
        host.run_shell(f"rm -f {path}; systemctl daemon-reload; rm -rf /var/log/bingo-host "
                       "/var/lib/bingo-host/journal-*.cursor", check=False)
