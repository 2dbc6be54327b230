"""Security patches and metrics on the bootstrapped test host, for real.

Patching: real apt and real unattended-upgrades (installed by bootstrap from Debian's packages),
against local repositories on the test host that stand in for Debian's: one whose Release file
says what bookworm-security's says (origin Debian, label Debian-Security, codename
bookworm-security), with a newer `bingo-fake-sec`, and one that looks like the main suite with
a newer `bingo-fake-other`. Only the first may be upgraded. `bingo-fake-sec` ships the binary a
running service executes, so after the upgrade that service runs replaced code: needrestart
must see it and `bingo-host patch` restart it. The real package lists are put back afterwards.

Unit-level: the parser of needrestart's and dnf's lists, the reboot marker in `status`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from bingo_host import metrics, patches
from bingo_host.config_file import load_config_text
from bingo_host.facts.platforms import PLATFORMS

pytest_plugins = ["tests.aws_servers"]


# -- units --

def test_services_to_restart_from_needrestart_and_dnf():
    needrestart = ("NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0\nNEEDRESTART-KSTA: 1\n"
                   "NEEDRESTART-SVC: nginx.service\nNEEDRESTART-SVC: dbus.service\n"
                   "NEEDRESTART-SVC: systemd-logind.service\nNEEDRESTART-SVC: bingo-uwsgi.service\n")
    assert patches.services_to_restart(needrestart) == (
        ["nginx.service", "bingo-uwsgi.service"], ["dbus.service", "systemd-logind.service"])
    dnf = "mariadb.service\ndbus-broker.service\namazon-ssm-agent.service\nuser@1000.service\n"
    assert patches.services_to_restart(dnf) == (
        ["mariadb.service"], ["dbus-broker.service", "amazon-ssm-agent.service", "user@1000.service"])
    assert patches.services_to_restart("Updating Subscription Management repositories.\n") == ([], [])


def test_the_upgrade_is_security_only_on_both_platforms():
    al = PLATFORMS["amzn2023"]
    assert [a.format(release="2023.9.20251117") for a in al.patch_upgrade_cmd] == [
        "dnf", "upgrade", "--security", "-y", "--releasever=2023.9.20251117"]
    assert al.reboot_check_cmd and al.reboot_marker.startswith("/run/")
    deb = PLATFORMS["debian12"]
    assert deb.patch_upgrade_cmd[0] == "unattended-upgrade" and deb.reboot_marker == "/run/reboot-required"


def test_patches_release_is_checked():
    from bingo_host.config_file import load_config_text
    from bingo_host.errors import ConfigError

    assert load_config_text("patches:\n  release: 2023.9.20251117\n").patches.release == "2023.9.20251117"
    with pytest.raises(ConfigError) as err:
        load_config_text("patches:\n  release: '2023; rm -rf /'\n")
    assert err.value.field == "patches.release"


def test_status_reads_the_reboot_marker_and_the_last_run(tmp_path):
    import dataclasses

    from bingo_host.status.report import Report
    from bingo_host.status.records import check_patches
    from bingo_host.status.text import render_text

    platform = dataclasses.replace(PLATFORMS["amzn2023"], reboot_marker=str(tmp_path / "reboot-required"))
    record = tmp_path / "last-patch.json"
    r = Report()
    check_patches(r, platform, str(record))
    assert r.data["patches"] == {"reboot_required": False, "last_run": None, "ok": None, "error": None,
                                 "restart_deferred": []} and r.problems == []
    record.write_text(json.dumps({"finished_at": "2026-11-28T04:40:00Z", "ok": False,
                                  "error": "patch: not applied, a deployment held the host"}))
    (tmp_path / "reboot-required").touch()
    r = Report()
    check_patches(r, platform, str(record))
    assert [(p["check"], p["severity"]) for p in r.problems] == [("patches.reboot", "warning"),
                                                                 ("patches", "warning")]
    text = render_text({"host": "h", "platform": "amzn2023", "time": "t", "verdict": "degraded",
                        "problems": r.problems, "services": [], "storage": {}, "memory": None,
                        "database": None, "release": None, "snapshot": None, "certificate": None,
                        "http": [], **r.data})
    assert "REBOOT NEEDED" in text and "FAILED: patch: not applied" in text


# -- the fake security update, built on the machine with dpkg-deb --

def _deb(out: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    tree = out / f"{name}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: bingo-host tests <t@example.com>\n"
        f"Section: misc\nPriority: optional\nDescription: fake package for bingo-host's patch test\n")
    for path, data in files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755)
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    return deb


def _flat_repo(repo: Path, debs: list[Path], origin: str, label: str, codename: str) -> None:
    """A flat apt repository (deb [trusted=yes] file:REPO ./) whose Release says who it is."""
    repo.mkdir(parents=True)
    for deb in debs:
        (repo / deb.name).write_bytes(deb.read_bytes())
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True,
                              capture_output=True, text=True).stdout
    (repo / "Packages").write_text(packages)
    data = packages.encode()
    date = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")
    (repo / "Release").write_text(
        f"Origin: {origin}\nLabel: {label}\nSuite: {codename}\nCodename: {codename}\nDate: {date}\n"
        f"Architectures: all amd64\nSHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} Packages\n")


FAKE_UNIT = """[Unit]
Description=a service running bingo-fake-sec's binary
[Service]
ExecStart=/usr/libexec/bingo-fake/daemon infinity
"""


@pytest.fixture
def fake_updates(bootstrapped, tmp_path):
    """Two installed fake packages with newer versions waiting: one in a 'security' repository,
    one in a 'main' one; apt sees only these repositories until the test ends."""
    host = bootstrapped.host
    sleep = (host.root / "usr/bin/sleep").read_bytes()
    built = tmp_path / "debs"
    built.mkdir()
    old = [_deb(built, "bingo-fake-sec", "1.0", {"/usr/libexec/bingo-fake/daemon": sleep}),
           _deb(built, "bingo-fake-other", "1.0", {"/usr/libexec/bingo-fake/other": b"#!/bin/sh\n"})]
    srv = host.root / "srv/bingo-test"
    _flat_repo(srv / "security", [_deb(built, "bingo-fake-sec", "1.1",
                                       {"/usr/libexec/bingo-fake/daemon": sleep})],
               "Debian", "Debian-Security", "bookworm-security")
    _flat_repo(srv / "main", [_deb(built, "bingo-fake-other", "1.1",
                                   {"/usr/libexec/bingo-fake/other": b"#!/bin/sh\nexit 0\n"})],
               "Debian", "Debian", "bookworm")
    (srv / "old").mkdir()
    for deb in old:
        (srv / "old" / deb.name).write_bytes(deb.read_bytes())
    host.run_shell(
        "set -e; cp -a /etc/apt/sources.list /srv/bingo-test/sources.list.saved; "
        "cp -a /var/lib/apt/lists /srv/bingo-test/lists.saved; "
        "printf 'deb [trusted=yes] file:/srv/bingo-test/security ./\\n"
        "deb [trusted=yes] file:/srv/bingo-test/main ./\\n' > /etc/apt/sources.list; "
        "dpkg -i /srv/bingo-test/old/*.deb >/dev/null")
    host.put_file("/etc/systemd/system/bingo-fake.service", FAKE_UNIT)
    host.run_shell("systemctl daemon-reload && systemctl start bingo-fake.service")
    try:
        yield host
    finally:
        host.run_shell(
            "systemctl stop bingo-fake.service; rm -f /etc/systemd/system/bingo-fake.service; "
            "systemctl daemon-reload; dpkg -P bingo-fake-sec bingo-fake-other >/dev/null; "
            "cp -a /srv/bingo-test/sources.list.saved /etc/apt/sources.list && "
            "rm -rf /var/lib/apt/lists && cp -a /srv/bingo-test/lists.saved /var/lib/apt/lists && "
            "rm -rf /srv/bingo-test /var/lib/bingo-host/deploy.json", check=False)


def _version(host, package: str) -> str:
    return host.run(["dpkg-query", "-W", "-f", "${Version}", package]).stdout


def _main_pid(host, unit: str) -> str:
    return host.run(["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.strip()


def _status(bootstrapped) -> tuple[int, dict]:
    r = bootstrapped.bingo("status", "--json")
    return r.returncode, json.loads(r.stdout)


def test_bootstrap_sets_up_security_only_patching(bootstrapped):
    host = bootstrapped.host
    assert host.run(["systemctl", "is-enabled", "bingo-host-patch.timer"]).stdout.strip() == "enabled"
    assert host.run(["systemctl", "is-active", "bingo-host-patch.timer"]).stdout.strip() == "active"
    dump = host.run(["apt-config", "dump", "Unattended-Upgrade::Origins-Pattern"]).stdout
    patterns = [line for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")]
    assert patterns == ['Unattended-Upgrade::Origins-Pattern:: '
                        '"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";'], dump
    periodic = host.run(["apt-config", "dump", "APT::Periodic::Unattended-Upgrade"]).stdout
    assert 'APT::Periodic::Unattended-Upgrade "0";' in periodic  # apt's own timer applies nothing


def test_patch_waits_out_a_deployment_then_applies_security_updates_only(bootstrapped, fake_updates):
    host = fake_updates
    # A deployment in progress (its hook "running" as a live process: PID 1): no patching.
    start = host.run(["/opt/bingo-host/venv/bin/python", "-c",
                      "import psutil; print(psutil.Process(1).create_time())"]).stdout.strip()
    host.put_file("/var/lib/bingo-host/deploy.json", json.dumps({
        "schema": 1, "deployment_id": "d-TESTPATCH", "status": "in-progress", "event": "AfterInstall",
        "event_status": "running", "pid": 1, "pid_start": float(start), "driver_pid": None,
        "updated_at": "2026-11-28T00:00:00Z"}))
    blocked = host.run(["/usr/local/bin/bingo-host", "patch"], env={"BINGO_HOST_PATCH_IDLE_WAIT": "2"},
                       check=False, timeout=120)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "deployment d-TESTPATCH" in blocked.stderr and "not applied" in blocked.stderr
    assert _version(host, "bingo-fake-sec") == "1.0"
    rc, report = _status(bootstrapped)
    assert report["patches"]["ok"] is False and rc == 1
    assert any(p["check"] == "patches" for p in report["problems"])

    # The deployment is over: the timer's service applies the security update, and only it.
    host.run(["rm", "/var/lib/bingo-host/deploy.json"])
    pid_before = _main_pid(host, "bingo-fake.service")
    since = host.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    started = time.monotonic()
    run = host.run(["systemctl", "start", "bingo-host-patch.service"], check=False, timeout=900)
    log = host.run(["journalctl", "--no-pager", "-o", "cat", "--since", since]).stdout
    assert run.returncode == 0, log[-3000:]
    assert _version(host, "bingo-fake-sec") == "1.1"
    assert _version(host, "bingo-fake-other") == "1.0"  # not from the security origin
    # It ran replaced code: needrestart listed it, bingo-host restarted it.
    assert "patch: restarted bingo-fake.service" in log
    assert host.run(["systemctl", "is-active", "bingo-fake.service"]).stdout.strip() == "active"
    assert _main_pid(host, "bingo-fake.service") not in ("0", pid_before)
    # Under the deployments' build bounds: a transient scope systemd started for it.
    assert "bingo-host: security updates" in log
    record = json.loads(host.read_file("/var/lib/bingo-host/last-patch.json"))
    assert record["ok"] and "bingo-fake.service" in record["restarted"], record
    rc, report = _status(bootstrapped)
    assert report["patches"]["ok"] is True and report["patches"]["last_run"], report["patches"]
    assert not any(p["check"].startswith("patches") for p in report["problems"]), report["problems"]
    print(f"patch run: {time.monotonic() - started:.1f} s")


def test_status_says_when_a_reboot_is_needed(bootstrapped):
    host = bootstrapped.host
    host.run(["touch", "/run/reboot-required"])  # what Debian's package scripts create
    try:
        rc, report = _status(bootstrapped)
        assert rc == 1 and report["patches"]["reboot_required"] is True
        assert [p["severity"] for p in report["problems"] if p["check"] == "patches.reboot"] == ["warning"]
        assert "REBOOT NEEDED" in bootstrapped.bingo("status").stdout
    finally:
        host.run(["rm", "-f", "/run/reboot-required"])
    rc, report = _status(bootstrapped)
    assert report["patches"]["reboot_required"] is False
    assert not any(p["check"] == "patches.reboot" for p in report["problems"])


# -- metrics from the test host into moto's CloudWatch, through the timer's own service --

def test_metrics_timer_puts_the_hosts_metrics(bootstrapped, moto_server, imds_server):
    import boto3
    import yaml

    from tests.conftest import CONFIG

    host = bootstrapped.host
    moto_server.reset()
    saved = host.read_file(CONFIG)
    cfg = yaml.safe_load(saved)
    cfg["metrics"] = {"enabled": True, "interval_minutes": 1}
    dropin = "/etc/systemd/system/bingo-host-metrics.service.d/test-endpoints.conf"
    try:
        host.put_file(CONFIG, yaml.safe_dump(cfg), mode=0o600)
        boot = bootstrapped.bingo("bootstrap")
        assert boot.returncode == 0 and "enable --now bingo-host-metrics.timer" in boot.stdout, boot.stdout
        assert host.run(["systemctl", "is-active", "bingo-host-metrics.timer"]).stdout.strip() == "active"
        host.put_file(dropin, "[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in {
            "AWS_ENDPOINT_URL_CLOUDWATCH": moto_server.url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_server.url,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items()))
        host.run(["systemctl", "daemon-reload"])
        host.run(["systemctl", "start", "bingo-host-metrics.service"], timeout=120)
        client = boto3.client("cloudwatch", region_name=imds_server.region, endpoint_url=moto_server.url,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        listed = client.list_metrics(Namespace="BingoHost")["Metrics"]
        paths = sorted(d["Value"] for m in listed if m["MetricName"] == "DiskUsedPercent"
                       for d in m["Dimensions"] if d["Name"] == "Path")
        assert paths == ["/", "/var/lib/mysql"]
        typed = load_config_text(yaml.safe_dump(cfg), CONFIG)
        ages = {name for name, (_, _, switch, _) in metrics.AGES.items() if getattr(typed, switch).enabled}
        assert {m["MetricName"] for m in listed} == {"Http5xx", "MemoryUsedPercent", "SwapUsedPercent",
                                                     "DiskUsedPercent", metrics.HEALTHY, *ages}
        assert all({"Name": "InstanceId", "Value": imds_server.instance_id} in m["Dimensions"] for m in listed)
        # Healthy says what `status` says on the host, run by the same unit.
        now = dt.datetime.now(dt.timezone.utc)
        points = client.get_metric_statistics(
            Namespace="BingoHost", MetricName=metrics.HEALTHY, StartTime=now - dt.timedelta(minutes=10),
            EndTime=now + dt.timedelta(minutes=1), Period=60, Statistics=["Minimum", "Maximum"],
            Dimensions=[{"Name": "InstanceId", "Value": imds_server.instance_id}])["Datapoints"]
        status = bootstrapped.bingo("status")
        expected = 1.0 if status.returncode == 0 else 0.0
        assert points and {p["Minimum"] for p in points} | {p["Maximum"] for p in points} == {expected}, \
            (points, status.stdout)
    finally:
        host.run(["rm", "-rf", str(Path(dropin).parent)])
        host.put_file(CONFIG, saved, mode=0o600)
    boot = bootstrapped.bingo("bootstrap")
    assert boot.returncode == 0 and "disable --now bingo-host-metrics.timer" in boot.stdout, boot.stdout
    assert host.run(["systemctl", "is-enabled", "bingo-host-metrics.timer"], check=False).returncode != 0


def test_patches_disabled_removes_the_timer_and_the_tools_config(bootstrapped):
    import yaml

    from tests.conftest import CONFIG

    host = bootstrapped.host
    saved = host.read_file(CONFIG)
    cfg = yaml.safe_load(saved)
    cfg["patches"] = {"enabled": False}
    try:
        host.put_file(CONFIG, yaml.safe_dump(cfg), mode=0o600)
        boot = bootstrapped.bingo("bootstrap")
        assert boot.returncode == 0, boot.stdout + boot.stderr
        for change in ("disable --now bingo-host-patch.timer", "remove /etc/apt/apt.conf.d/52bingo-host-security",
                       "remove /etc/needrestart/conf.d/bingo-host.conf",
                       "remove /etc/systemd/system/bingo-host-patch.timer"):
            assert change in boot.stdout, boot.stdout
        assert host.run(["systemctl", "is-enabled", "bingo-host-patch.timer"], check=False).returncode != 0
        rc, report = _status(bootstrapped)
        assert not any(s["name"] == "patch-timer" and s["required"] for s in report["services"])
    finally:
        host.put_file(CONFIG, saved, mode=0o600)
    boot = bootstrapped.bingo("bootstrap")
    assert boot.returncode == 0 and "enable --now bingo-host-patch.timer" in boot.stdout, boot.stdout
    again = bootstrapped.bingo("bootstrap")
    assert "already converged" in again.stdout, again.stdout
