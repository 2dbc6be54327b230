"""`bingo-host metrics push`: nginx's 5xx counted once each, the status facts as datums, and the
put through boto3 into moto's CloudWatch (server mode, reached through AWS_ENDPOINT_URL_CLOUDWATCH),
read back with list_metrics and get_metric_statistics."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from click.testing import CliRunner

from bingo_host import metrics
from bingo_host.cli import main
from bingo_host.config_file import load_config_text
from tests.reports import HEALTHY_REPORT

pytest_plugins = ["tests.aws_servers"]

LINE = '203.0.113.7 - - [28/Nov/2026:09:00:00 +0000] "GET {path} HTTP/1.1" {status} 12 "-" "curl/8" "-" 0.003\n'


def log_lines(*statuses, path="/api/user"):
    return "".join(LINE.format(path=path, status=s) for s in statuses)


def test_5xx_counted_once_from_where_the_last_run_stopped(tmp_path):
    log, offsets = tmp_path / "access.log", str(tmp_path / "offset.json")
    log.write_text(log_lines(500, 502))
    assert metrics.count_5xx(str(log), offsets) == 0  # history is not this interval's
    with log.open("a") as f:
        f.write(log_lines(200, 503, 404, 504) + log_lines(500)[:-1])  # the last line unfinished
    assert metrics.count_5xx(str(log), offsets) == 2
    with log.open("a") as f:
        f.write("\n" + log_lines(301))
    assert metrics.count_5xx(str(log), offsets) == 1  # the finished line, counted now, once
    assert metrics.count_5xx(str(log), offsets) == 0


def test_a_rotated_log_is_read_from_its_start(tmp_path):
    log, offsets = tmp_path / "access.log", str(tmp_path / "offset.json")
    log.write_text(log_lines(200) * 50)
    metrics.count_5xx(str(log), offsets)
    os.rename(log, tmp_path / "access.log.1")
    log.write_text(log_lines(500, 200, 501))  # a new inode
    assert metrics.count_5xx(str(log), offsets) == 2
    log.write_text(log_lines(502))  # truncated in place (copytruncate): shorter than the offset
    assert metrics.count_5xx(str(log), offsets) == 1
    assert metrics.count_5xx(str(tmp_path / "missing.log"), offsets) == 0


def _config(text: str = ""):
    return load_config_text("database:\n  host: db.example.com\n  password: literal-password-1\n" + text, "test")



def _by_key(data: list[dict]) -> dict:
    return {(d["MetricName"], tuple((x["Name"], x["Value"]) for x in d["Dimensions"])): (d["Value"], d["Unit"])
            for d in data}


def test_datums_carry_the_agreed_names_and_dimensions():
    cfg = _config("snapshots:\n  enabled: true\nbackups:\n  enabled: true\n  bucket: bingo-backups\n")
    got = _by_key(metrics.metric_data(HEALTHY_REPORT, cfg, 3, "i-0abc", up_hours=100.0))
    inst = (("InstanceId", "i-0abc"),)
    assert got == {("Http5xx", inst): (3.0, "Count"),
                   ("Healthy", inst): (1.0, "None"),
                   ("MemoryUsedPercent", inst): (41.5, "Percent"),
                   ("SwapUsedPercent", inst): (0.0, "Percent"),
                   ("DiskUsedPercent", inst + (("Path", "/"),)): (33.3, "Percent"),
                   ("DiskUsedPercent", inst + (("Path", "/var/lib/mysql"),)): (12.0, "Percent"),
                   ("SnapshotAgeHours", inst): (3.5, "None"),
                   ("BackupAgeHours", inst): (20.0, "None"),
                   ("RestoreDrillAgeHours", inst): (400.2, "None")}
    unmounted = {**HEALTHY_REPORT, "storage": {"root": HEALTHY_REPORT["storage"]["root"], "data_volume": {
        "mountpoint": "/var/lib/mysql", "used_percent": None}}}
    assert len(metrics.metric_data(unmounted, cfg, 0, "i-0abc", 1.0)) == 8


def test_what_the_config_turns_off_sends_no_age():
    got = _by_key(metrics.metric_data(HEALTHY_REPORT, _config("snapshots:\n  enabled: false\n"), 0, "i-0abc", 1.0))
    assert {name for name, _ in got} == {"Http5xx", "Healthy", "MemoryUsedPercent", "SwapUsedPercent",
                                         "DiskUsedPercent"}


def test_warnings_alone_do_not_make_the_host_unhealthy():
    """A pending reboot or an overdue run makes status 'degraded' but pages only through its own
    metric: Healthy stays 1 unless a problem is an error."""
    cfg = _config("")
    inst = (("InstanceId", "i-0abc"),)
    warned = {**HEALTHY_REPORT, "verdict": "degraded", "problems": [
        {"check": "patches", "severity": "warning", "message": "a reboot is pending"}]}
    assert _by_key(metrics.metric_data(warned, cfg, 0, "i-0abc", 1.0))[("Healthy", inst)] == (1.0, "None")
    errored = {**warned, "problems": warned["problems"] + [
        {"check": "http", "severity": "error", "message": "the site does not answer"}]}
    assert _by_key(metrics.metric_data(errored, cfg, 0, "i-0abc", 1.0))[("Healthy", inst)] == (0.0, "None")


def test_a_degraded_host_and_a_failed_or_missing_run():
    """Healthy is 0 unless status says healthy; a failed last run sends no age (its predecessor's
    time is not recorded: the alarm takes the gap as breaching); a host where none ran yet counts
    its uptime (a new root: nothing was due before it booted)."""
    cfg = _config("snapshots:\n  enabled: true\nbackups:\n  enabled: true\n  bucket: bingo-backups\n")
    report = {**HEALTHY_REPORT, "verdict": "degraded", "snapshot": {"ok": False, "age_hours": 1.0},
              "backups": {"last_backup": None, "last_verified_restore": {"ok": True, "age_hours": 2.0}},
              "problems": [{"check": "nginx", "severity": "error", "message": "nginx is not running"}]}
    got = _by_key(metrics.metric_data(report, cfg, 0, "i-0abc", up_hours=7.25))
    inst = (("InstanceId", "i-0abc"),)
    assert got[("Healthy", inst)] == (0.0, "None")
    assert ("SnapshotAgeHours", inst) not in got
    assert got[("BackupAgeHours", inst)] == (7.2, "None")
    assert got[("RestoreDrillAgeHours", inst)] == (2.0, "None")


@pytest.fixture
def cloudwatch(aws_env, moto_server, monkeypatch, tmp_path):
    import boto3

    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", moto_server.url)
    aws_env["imds"].instance_id = "i-0123456789abcdef0"
    log = tmp_path / "access.log"
    log.write_text(log_lines(200))
    monkeypatch.setattr(metrics, "ACCESS_LOG", str(log))
    monkeypatch.setattr(metrics, "OFFSET_FILE", str(tmp_path / "offset.json"))
    config = tmp_path / "config.yaml"
    config.write_text("database:\n  host: db.example.com\n  password: literal-password-1\nsnapshots:\n  enabled: false\n"
                      "metrics:\n  enabled: true\n")
    client = boto3.client("cloudwatch", region_name=aws_env["imds"].region, endpoint_url=moto_server.url)
    return log, config, client


def _push(config):
    return CliRunner().invoke(main, ["--config", str(config), "metrics", "push"], catch_exceptions=False)


def test_push_puts_the_metrics_into_cloudwatch(cloudwatch):
    log, config, client = cloudwatch
    assert _push(config).exit_code == 0  # marks the log's end
    with log.open("a") as f:
        f.write(log_lines(500, 200, 502, 503))
    result = _push(config)
    assert result.exit_code == 0, result.output
    assert "Http5xx=3" in result.output
    listed = client.list_metrics(Namespace="BingoHost")["Metrics"]
    names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in listed}
    inst = ("InstanceId", "i-0123456789abcdef0")
    assert names == {("Http5xx", (inst,)), ("Healthy", (inst,)), ("MemoryUsedPercent", (inst,)),
                     ("SwapUsedPercent", (inst,)), ("DiskUsedPercent", (inst, ("Path", "/")))}
    now = dt.datetime.now(dt.timezone.utc)
    stats = client.get_metric_statistics(
        Namespace="BingoHost", MetricName="Http5xx", Dimensions=[{"Name": "InstanceId", "Value": inst[1]}],
        StartTime=now - dt.timedelta(minutes=10), EndTime=now + dt.timedelta(minutes=1), Period=60,
        Statistics=["Sum", "SampleCount"])["Datapoints"]
    assert sum(p["Sum"] for p in stats) == 3 and sum(p["SampleCount"] for p in stats) == 2
    mem = client.get_metric_statistics(
        Namespace="BingoHost", MetricName="MemoryUsedPercent", Dimensions=[{"Name": "InstanceId", "Value": inst[1]}],
        StartTime=now - dt.timedelta(minutes=10), EndTime=now + dt.timedelta(minutes=1), Period=60,
        Statistics=["Maximum"])["Datapoints"]
    assert mem and 0 < max(p["Maximum"] for p in mem) <= 100


def test_push_without_instance_metadata_fails_naming_it(cloudwatch, aws_env):
    _, config, _ = cloudwatch
    aws_env["imds"].down = True
    result = CliRunner().invoke(main, ["--config", str(config), "metrics", "push"])
    assert result.exit_code == 1 and "metadata" in result.output.lower(), result.output
