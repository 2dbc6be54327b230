"""`bingo-host snapshot --list`: every snapshot of this instance's volumes, as a table."""

from __future__ import annotations

import datetime as dt

from ..facts.imds import IMDS
from .ec2 import DEVICE_TAG, STACK_TAG, attached_volumes, call, clients, tag_dict

COLUMNS = (("SNAPSHOT", "snapshot"), ("VOLUME", "volume"), ("DEVICE", "device"),
           ("STARTED (UTC)", "time"), ("STATE", "state"), ("SIZE", "size"),
           ("STACK", "stack"))


def list_snapshots(*, session=None, imds: IMDS | None = None) -> list[dict]:
    """Snapshots of the volumes attached to this instance (bingo-host's or not: STACK says whose
    retention keeps them), newest first per volume."""
    ident = (imds or IMDS()).identity()
    ec2, _ = clients(ident.region, session)
    devices = {v.volume_id: v.device for v in attached_volumes(ec2, ident.instance_id)}
    rows = []
    if devices:
        resp = call(ec2, "DescribeSnapshots", OwnerIds=["self"], Filters=[
            {"Name": "volume-id", "Values": list(devices)}])
        for snap in resp.get("Snapshots", []):
            tags = tag_dict(snap)
            rows.append({
                "snapshot": snap["SnapshotId"], "volume": snap["VolumeId"],
                "device": devices.get(snap["VolumeId"], tags.get(DEVICE_TAG, "")),
                "time": snap["StartTime"].astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                "state": snap.get("State", ""), "progress": snap.get("Progress", ""),
                "size": f"{snap.get('VolumeSize', '?')} GiB",
                "stack": tags.get(STACK_TAG, "-"),  # retention's: its bingo-host:stack tag
            })
    rows.sort(key=lambda r: r["time"], reverse=True)
    rows.sort(key=lambda r: r["device"])  # stable: newest first within each device
    return rows


def format_table(rows: list[dict]) -> str:
    table = [[title for title, _ in COLUMNS]] + [[str(r[key]) for _, key in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in table)
