"""The journal export the CloudWatch agent reads, run for real. The monitoring and timers steps'
decisions (the agent installed, configured and started where the platform packages it, skipped
with the reason where it does not, off when asked; the journal export and metrics timers) are
tests/steps/monitoring/ and tests/steps/timers/'s cases; the metrics timer's real run is in
test_patches.py (test host), the agent's config content in test_render.py."""

from __future__ import annotations

from bingo_host.config_file import load_config_text
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import resolve

GIB = 1 << 30


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
