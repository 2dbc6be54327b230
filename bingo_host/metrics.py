"""`bingo-host metrics push`: what the alarms watch, as CloudWatch custom metrics.

One short process per `metrics.interval_minutes` (bingo-host-metrics.timer) reads the facts
`status --json` reports and counts nginx's 5xx answers since its last run, then makes one
PutMetricData call: what an alarm needs for a fraction of the CloudWatch agent's memory. Namespace
BingoHost, dimension InstanceId: MemoryUsedPercent, SwapUsedPercent, DiskUsedPercent (per file
system, dimension Path too), Http5xx (a Count), and what pages someone when the host stops
doing its job: Healthy (0 when `status` finds an error, 1 when it finds none: a warning, e.g. a
pending reboot, does not page) and the hours the host has gone
without a good snapshot, backup and restore drill (AGES, for what the config turns on). The
endpoint comes only from the standard overrides (AWS_ENDPOINT_URL_CLOUDWATCH, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import logging
import os
import re
import time

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import layout, state
from .errors import BingoHostError
from .facts.imds import IMDS
from .status import collect

ACCESS_LOG = "/var/log/nginx/access.log"
OFFSET_FILE = f"{layout.STATE_DIR}/metrics-access-log.json"
READ_LIMIT = 64 * 1024 * 1024  # lines beyond this per run are skipped (and counted next time)
# Both the combined format (Debian) and AL2023's 'main': the status follows the quoted request.
_STATUS = re.compile(rb'" (\d{3}) ')
HEALTHY = "Healthy"
# Metric -> (the status report's section, its entry, the config section that turns it on and the
# schedule field whose period the alarms' threshold follows).
AGES = {"SnapshotAgeHours": ("snapshot", None, "snapshots", "schedule"),
        "BackupAgeHours": ("backups", "last_backup", "backups", "schedule"),
        "RestoreDrillAgeHours": ("backups", "last_verified_restore", "backups", "drill_schedule")}

log = logging.getLogger(__name__)


def count_5xx(log_path: str, offset_file: str) -> int:
    """5xx answers logged since the last call. The first call only marks where the log ends
    (history is not this interval's); a rotated log (another inode, or shorter) is read from
    its start."""
    try:
        f = open(log_path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        st = os.fstat(f.fileno())
        seen = state.read_json(offset_file) or {}
        first = "inode" not in seen
        offset = seen.get("offset", 0) if seen.get("inode") == st.st_ino else 0
        if offset > st.st_size:
            offset = 0
        count = 0
        if not first:
            f.seek(offset)
            data = f.read(READ_LIMIT)
            data = data[:data.rfind(b"\n") + 1]  # a line still being written counts next time
            count = sum(1 for line in data.splitlines()
                        if (m := _STATUS.search(line)) and m.group(1).startswith(b"5"))
            end = offset + len(data)
        else:
            end = st.st_size
        state.write_json(offset_file, {"inode": st.st_ino, "offset": end})
        return count


def hours_without(entry: dict | None, up_hours: float) -> float | None:
    """Hours this host has gone without a good run: the last run's age when it succeeded; the
    uptime when none ran here yet (a new root: none was due before it booted); None when the last
    one failed, since the time of the one before is not recorded (no datum: the alarm breaches)."""
    if entry is None:
        return round(up_hours, 1)
    return entry.get("age_hours") if entry.get("ok") is True else None


def _errors(report: dict) -> list[dict]:
    """status's problems of severity error (a service down, the site not answering, a failed
    check); its warnings (a pending reboot, an overdue run) have their own metrics or none."""
    return [p for p in report.get("problems", []) if p.get("severity", "error") == "error"]


def metric_data(report: dict, cfg, http_5xx: int, instance_id: str, up_hours: float) -> list[dict]:
    """The PutMetricData datums for a status report (status.collect) and nginx's 5xx count."""
    inst = [{"Name": "InstanceId", "Value": instance_id}]
    data = [{"MetricName": "Http5xx", "Dimensions": inst, "Value": float(http_5xx), "Unit": "Count"},
            {"MetricName": HEALTHY, "Dimensions": inst,
             "Value": 0.0 if _errors(report) else 1.0, "Unit": "None"}]
    if report.get("memory"):
        data.append({"MetricName": "MemoryUsedPercent", "Dimensions": inst,
                     "Value": float(report["memory"]["used_percent"]), "Unit": "Percent"})
    if report.get("swap"):
        data.append({"MetricName": "SwapUsedPercent", "Dimensions": inst,
                     "Value": float(report["swap"]["used_percent"]), "Unit": "Percent"})
    storage = report.get("storage") or {}
    for fs in (storage.get("root"), storage.get("data_volume")):
        if fs and fs.get("used_percent") is not None:
            data.append({"MetricName": "DiskUsedPercent",
                         "Dimensions": inst + [{"Name": "Path", "Value": fs["mountpoint"]}],
                         "Value": float(fs["used_percent"]), "Unit": "Percent"})
    for name, (section, key, switch, _) in AGES.items():
        if not getattr(cfg, switch).enabled:
            continue
        entry = report.get(section)
        entry = (entry or {}).get(key) if key else entry
        hours = hours_without(entry, up_hours)
        if hours is not None:
            data.append({"MetricName": name, "Dimensions": inst, "Value": float(hours), "Unit": "None"})
    return data


def push(cfg, imds=None, session=None) -> list[dict]:
    """One PutMetricData with this host's metrics; returns the datums sent."""
    ident = (imds or IMDS()).identity()
    up_hours = (time.time() - psutil.boot_time()) / 3600
    data = metric_data(collect(cfg), cfg, count_5xx(ACCESS_LOG, OFFSET_FILE), ident.instance_id, up_hours)
    put(data, ident.region, session)
    log.info(f"metrics: {len(data)} values put to CloudWatch {layout.METRICS_NAMESPACE} "
             f"({ident.instance_id}): "
             + ", ".join(f"{d['MetricName']}"
                         + "".join(f"[{x['Value']}]" for x in d["Dimensions"] if x["Name"] == "Path")
                         + f"={d['Value']:g}" for d in data))
    return data


def put(data: list[dict], region: str, session=None) -> None:
    session = session or boto3.session.Session()
    client = session.client("cloudwatch", region_name=region, config=Config(
        connect_timeout=3, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3}))
    try:
        client.put_metric_data(Namespace=layout.METRICS_NAMESPACE, MetricData=data)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise BingoHostError(f"CloudWatch PutMetricData failed: {err.get('Code')}: {err.get('Message')} "
                             "(the instance role needs cloudwatch:PutMetricData)") from None
    except BotoCoreError as exc:
        raise BingoHostError(f"CloudWatch PutMetricData failed: {exc}") from None
