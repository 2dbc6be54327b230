"""`bingo-host metrics push`: what the alarms watch, as CloudWatch custom metrics.

One short process per `metrics.interval_minutes` (bingo-host-metrics.timer) reads the facts
`status --json` reports and counts nginx's 5xx answers since its last run, then makes one
PutMetricData call: what an alarm needs for a fraction of the CloudWatch agent's memory. Namespace
BingoHost, dimension InstanceId: MemoryUsedPercent, SwapUsedPercent, DiskUsedPercent (per file
system, dimension Path too), Http5xx (a Count). The endpoint comes only from the standard
overrides (AWS_ENDPOINT_URL_CLOUDWATCH, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import logging
import os
import re

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import layout, state
from .errors import BingoHostError
from .facts.imds import IMDS
from .status.checks import check_memory, check_storage
from .status.report import Report

ACCESS_LOG = "/var/log/nginx/access.log"
OFFSET_FILE = f"{layout.STATE_DIR}/metrics-access-log.json"
READ_LIMIT = 64 * 1024 * 1024  # lines beyond this per run are skipped (and counted next time)
# Both the combined format (Debian) and AL2023's 'main': the status follows the quoted request.
_STATUS = re.compile(rb'" (\d{3}) ')

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


def metric_data(facts: dict, http_5xx: int, instance_id: str) -> list[dict]:
    """The PutMetricData datums for a status report's storage/memory/swap sections."""
    inst = [{"Name": "InstanceId", "Value": instance_id}]
    data = [{"MetricName": "Http5xx", "Dimensions": inst, "Value": float(http_5xx), "Unit": "Count"}]
    if facts.get("memory"):
        data.append({"MetricName": "MemoryUsedPercent", "Dimensions": inst,
                     "Value": float(facts["memory"]["used_percent"]), "Unit": "Percent"})
    if facts.get("swap"):
        data.append({"MetricName": "SwapUsedPercent", "Dimensions": inst,
                     "Value": float(facts["swap"]["used_percent"]), "Unit": "Percent"})
    storage = facts.get("storage") or {}
    for fs in (storage.get("root"), storage.get("data_volume")):
        if fs and fs.get("used_percent") is not None:
            data.append({"MetricName": "DiskUsedPercent",
                         "Dimensions": inst + [{"Name": "Path", "Value": fs["mountpoint"]}],
                         "Value": float(fs["used_percent"]), "Unit": "Percent"})
    return data


def read_facts(cfg) -> dict:
    """The same memory and storage facts `status` reports (status/checks.py), nothing more."""
    r = Report()
    check_memory(r)
    check_storage(r, cfg)
    return r.data


def push(cfg, imds=None, session=None) -> list[dict]:
    """One PutMetricData with this host's metrics; returns the datums sent."""
    ident = (imds or IMDS()).identity()
    data = metric_data(read_facts(cfg), count_5xx(ACCESS_LOG, OFFSET_FILE), ident.instance_id)
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
