"""The restore under way: /var/lib/bingo-host/restore.json, written before the first change.

It names what a re-run needs and cannot read back from EC2 alone: the snapshot, the volume
that was attached (which may be detached by now), the device name, the token that finds a
new volume whose CreateVolume answer was lost, and the direction (forward, or back after a
failure). Progress itself is never recorded: each step reads EC2 and the host.

Schema (version 1), 0644: schema, snapshot_id, instance_id, device, old_volume, new_volume
(null until created), token, direction ("forward" | "back"), error, started_at, updated_at.
The outcome of the last restore goes to last-restore.json: snapshot_id, old_volume,
new_volume, ok, rolled_back, error, finished_at.
"""

from __future__ import annotations

import datetime as dt
import os

from . import layout, state

RECORD_FILE = f"{layout.STATE_DIR}/restore.json"
LAST_FILE = f"{layout.STATE_DIR}/last-restore.json"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def load() -> dict | None:
    rec = state.read_json(RECORD_FILE)
    return rec if rec and rec.get("schema") == 1 and rec.get("snapshot_id") else None


def save(rec: dict) -> None:
    rec["updated_at"] = now()
    os.makedirs(layout.STATE_DIR, exist_ok=True)
    state.write_json(RECORD_FILE, rec)


def finish(rec: dict, ok: bool, error: str | None = None) -> None:
    """Write the outcome for `status` and operators, then forget the restore."""
    state.write_json(LAST_FILE, {
        "snapshot_id": rec["snapshot_id"], "old_volume": rec["old_volume"],
        "new_volume": rec.get("new_volume"), "ok": ok, "rolled_back": not ok,
        "error": error, "started_at": rec.get("started_at"), "finished_at": now()})
    try:
        os.unlink(RECORD_FILE)
    except FileNotFoundError:
        pass
