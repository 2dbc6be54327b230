"""`bingo-host status`: healthy after bootstrap, degraded (and why) when MariaDB stops or the data
volume fills, and its --json output matching docs/status-schema.json.

The host tests share the bootstrapped test host and put back what they break.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.status_schema import SCHEMA, assert_valid, validate


# -- on this machine (no test host): the failure paths are schema-valid too, and imports are cheap --

def _bingo_here(tmp_path, *args, config=None):
    config = config or f"platform: debian12\nvolume: {{mountpoint: {tmp_path / 'data'}}}\n"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config)
    return subprocess.run([sys.executable, "-m", "bingo_host", "--config", str(cfg), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_validator_rejects_drift():
    # Each drift must be named: any partial report fails on its missing keys alone.
    assert "$.schema_version: 2 != 1" in validate({"schema_version": 2}, SCHEMA)
    assert "$: undocumented key 'extra'" in validate({"extra": 1}, SCHEMA)


def test_status_on_a_bare_machine_is_degraded_and_schema_valid(tmp_path):
    result = _bingo_here(tmp_path, "status", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert_valid(report)
    assert report["verdict"] == "degraded"
    checks = {p["check"] for p in report["problems"]}
    assert {"storage.data_volume", "database"} <= checks
    assert report["storage"]["data_volume"]["mounted"] is False
    assert report["storage"]["data_volume"]["mountpoint"] == str(tmp_path / "data")


def test_status_bad_config_exits_2(tmp_path):
    result = _bingo_here(tmp_path, "status", config="app: {health_path: 'no-slash'}\n")
    assert result.returncode == 2
    assert "app.health_path" in result.stderr


@pytest.mark.parametrize("args, rc, ran", [(["--help"], 0, "bingo_host.cli"),
                                            (["status", "--json"], 1, "bingo_host.status.checks")])
def test_no_boto3_or_jinja2_on_the_cheap_paths(tmp_path, args, rc, ran):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("platform: debian12\n")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "bingo_host", "--config", str(cfg),
                             *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    # A command that dies early imports nothing heavy either: it must have run to its end
    # (a traceback exits 1 too, like a degraded status).
    assert result.returncode == rc and "Traceback" not in result.stderr, result.stderr[-2000:]
    if args[0] == "status":
        assert json.loads(result.stdout)["verdict"] == "degraded"
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert ran in imported
    for heavy in ("boto3", "botocore", "jinja2"):
        assert heavy not in imported, f"{args} imports {heavy}"


def test_certificate_days_left_and_warning(tmp_path, monkeypatch):
    from bingo_host import state
    from bingo_host.config_file import load_config_text
    from bingo_host.status import checks, records

    live = tmp_path / "live" / "bingo.example.com"
    live.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "5",
                    "-subj", "/CN=bingo.example.com", "-keyout", str(live / "privkey.pem"),
                    "-out", str(live / "fullchain.pem")], check=True, capture_output=True)
    monkeypatch.setattr(state, "LETSENCRYPT_LIVE", str(tmp_path / "live"))
    cfg = load_config_text("https: {domain: bingo.example.com}\n")
    report = checks.Report()
    assert records.check_certificate(report, cfg) is True
    cert = report.data["certificate"]
    assert 4 < cert["days_left"] <= 5
    assert [p["severity"] for p in report.problems] == ["warning"]
    assert "expires in" in report.problems[0]["message"]


def test_snapshot_state_is_read_defensively(tmp_path):
    from bingo_host.config_file import load_config_text
    from bingo_host.status import checks, records

    cfg = load_config_text("{}\n")
    path = tmp_path / "last.json"
    for content, ok in [("not json", None), ('["a list"]', None),
                        ('{"started": "2020-01-01T00:00:00+00:00", "ok": false, "error": "boom"}', False),
                        ('{"finished": "garbage", "ok": true, "snapshots": [{"snapshot_id": "snap-1"}, 5],'
                         ' "freeze_ms": "x"}', True)]:
        path.write_text(content)
        r = checks.Report()
        records.check_snapshot(r, cfg, str(path))
        snap = r.data["snapshot"]
        if ok is None:
            assert snap is None
            continue
        assert snap["ok"] is ok
        assert not validate(snap, SCHEMA["properties"]["snapshot"])
        if ok:
            assert snap["snapshot_ids"] == ["snap-1"] and snap["freeze_ms"] is None and not r.problems
        else:
            assert any("boom" in p["message"] for p in r.problems)


# -- in the bootstrapped test host --

def status_json(bootstrapped) -> tuple[int, dict]:
    result = bootstrapped.bingo("status", "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert_valid(report)
    return result.returncode, report


def test_healthy_after_bootstrap(bootstrapped):
    result = bootstrapped.bingo("status")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "verdict: HEALTHY" in out
    assert "none deployed yet (placeholder page)" in out
    assert "no release yet" in out
    assert "\x1b[" not in out  # no colour when not on a terminal
    for name in ("nginx", "mariadb", "uwsgi", "snapshot-timer", "data volume", "database"):
        assert name in out


def test_json_is_schema_valid_and_complete(bootstrapped):
    rc, report = status_json(bootstrapped)
    assert rc == 0 and report["verdict"] == "healthy", report["problems"]
    services = {s["name"]: s for s in report["services"]}
    assert {"nginx", "mariadb", "uwsgi", "snapshot-timer", "renew-timer"} <= set(services)
    assert "codedeploy-agent" not in services  # not installed on the test host
    for name in ("nginx", "mariadb", "uwsgi", "snapshot-timer"):
        assert services[name]["active"] == "active" and services[name]["enabled"] == "enabled"
    assert services["snapshot-timer"]["next_run"]  # NextElapseUSecRealtime, as ISO time
    assert services["renew-timer"]["required"] is False  # HTTPS is off
    dv = report["storage"]["data_volume"]
    assert dv["mounted"] and dv["device"] == bootstrapped.volume.device and dv["filesystem"] == "ext4"
    assert dv["mountpoint"] == "/var/lib/mysql" and 0 < dv["used_percent"] < 85
    assert report["database"]["reachable"] and report["database"]["mode"] == "local"
    assert report["release"]["placeholder"] and report["release"]["current"] is None
    http = {h["kind"]: h for h in report["http"]}
    assert http["static"]["status"] == 200
    assert http["health"]["status"] == 502 and http["health"]["note"] == "no release yet"
    assert report["certificate"] is None
    password = bootstrapped.host.read_file("/etc/bingo-host/db-password").strip()
    assert password not in json.dumps(report)


def test_stopped_mariadb_is_degraded_and_named(bootstrapped):
    host = bootstrapped.host
    host.run(["systemctl", "stop", "mariadb"])
    try:
        result = bootstrapped.bingo("status")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "verdict: DEGRADED" in result.stdout
        assert "services.mariadb: mariadb.service is inactive" in result.stdout
        assert "database: cannot reach bingo as bingoapp" in result.stdout
        rc, report = status_json(bootstrapped)
        assert rc == 1
        checks = {p["check"] for p in report["problems"]}
        assert {"services.mariadb", "database"} <= checks
        password = host.read_file("/etc/bingo-host/db-password").strip()
        assert password not in result.stdout + json.dumps(report)
    finally:
        host.run(["systemctl", "start", "mariadb"])
    assert bootstrapped.bingo("status").returncode == 0


def test_full_data_volume_is_warned(bootstrapped):
    host = bootstrapped.host
    fill = "/var/lib/mysql/bingo-status-fill"
    df = host.run(["df", "-B1", "--output=size,used", "/var/lib/mysql"]).stdout.split()
    size, used = int(df[-2]), int(df[-1])
    need = int(size * 0.90) - used  # to about 90% of the (df) size
    try:
        host.run(["fallocate", "-l", str(need), fill])
        rc, report = status_json(bootstrapped)
        assert rc == 1
        warned = [p for p in report["problems"] if p["check"] == "storage.data_volume"]
        assert warned and warned[0]["severity"] == "warning", report["problems"]
        assert "% full" in warned[0]["message"]
        assert report["storage"]["data_volume"]["used_percent"] >= 85
        result = bootstrapped.bingo("status")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "storage.data_volume: the data volume (/var/lib/mysql) is" in result.stdout
    finally:
        host.run(["rm", "-f", fill])
    assert bootstrapped.bingo("status").returncode == 0


def test_timer_next_run_parsing():
    from bingo_host.status.checks import _unix_time

    assert _unix_time("Sat 2026-11-28 00:14:31 UTC") == "2026-11-28T00:14:31+00:00"
    assert _unix_time("@1700000000") == "2023-11-14T22:13:20+00:00"
    assert _unix_time("") is None and _unix_time("n/a") is None


def test_release_from_the_deploy_record(tmp_path):
    from bingo_host.config_file import load_config_text
    from bingo_host.status import checks, records

    root = tmp_path / "app"
    cfg = load_config_text(f"app: {{root: {root}}}\n")
    r = checks.Report()
    records.check_release(r, cfg)
    assert r.data["release"]["current"] is None and r.problems[0]["check"] == "release"  # no current

    (root / "placeholder").mkdir(parents=True)
    (root / "current").symlink_to("placeholder")
    r = checks.Report()
    records.check_release(r, cfg)
    assert r.data["release"]["placeholder"] and not r.problems

    for name, created in (("d-OLD", "2026-01-01T00:00:00+00:00"), ("d-NEW", "2026-02-01T00:00:00+00:00")):
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "bingo-release.json").write_text(json.dumps({
            "schema": 1, "id": name, "created_at": created, "activated_at": created,
            "bundle": {"type": "s3", "bucket": "b", "key": "k.zip", "version": "v1"}, "failed": None}))
    (root / "releases" / ".d-HALF.partial").mkdir()
    (root / "current").unlink()
    (root / "current").symlink_to("releases/d-NEW")
    r = checks.Report()
    records.check_release(r, cfg)
    rel = r.data["release"]
    assert not r.problems and not validate(rel, SCHEMA["properties"]["release"])
    assert (rel["current"], rel["older_kept"], rel["releases"]) == ("d-NEW", 1, 2)
    assert rel["deployed_at"] == "2026-02-01T00:00:00+00:00" and rel["source"] == "s3://b/k.zip (version v1)"

    record = root / "releases" / "d-NEW" / "bingo-release.json"
    record.write_text(json.dumps({"failed": {"at": "x", "event": "ValidateService", "reason": "502"}}))
    r = checks.Report()
    records.check_release(r, cfg)
    assert "marked failed (ValidateService: 502)" in r.problems[0]["message"]
