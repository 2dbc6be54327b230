"""What a block device holds: the signature blkid finds on it, and the LVM volumes on it. The
parsers are pure, so the volume step's decisions are tested from recorded output."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import subp


def _unquote_export(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_blkid_export(text: str) -> dict[str, str]:
    """``blkid -p -o export`` output (KEY=value lines; spaces escaped with '\\')."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            out[key] = _unquote_export(value)
    return out


BLKID_NOTHING = 2
BLKID_AMBIVALENT = 8


def read_signature(device: str) -> dict[str, str]:
    """What `blkid -p` finds on the device itself (not the blkid cache or udev).
    {} when nothing is found; {'AMBIVALENT': '1'} when several signatures compete."""
    r = subp.run(["blkid", "-p", "-o", "export", device],
                 rcs=(0, BLKID_NOTHING, BLKID_AMBIVALENT), timeout=60)
    if r.returncode == BLKID_AMBIVALENT:
        return {"AMBIVALENT": "1"}
    if r.returncode == BLKID_NOTHING:
        return {}
    found = parse_blkid_export(r.stdout)
    found.pop("DEVNAME", None)
    return found


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    lv: str
    path: str


def parse_lvs(text: str) -> list[LogicalVolume]:
    """``lvs --noheadings --separator '|' -o vg_name,lv_name,lv_path`` output."""
    rows = ([p.strip() for p in line.split("|")] for line in text.splitlines())
    return [LogicalVolume(*row) for row in rows if len(row) == 3 and row[0] and row[1]]


def lvs() -> list[LogicalVolume]:
    r = subp.run(["lvs", "--noheadings", "--separator", "|", "-o", "vg_name,lv_name,lv_path"],
                 timeout=60)
    return parse_lvs(r.stdout)
