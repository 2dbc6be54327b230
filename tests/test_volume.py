"""The data volume step.

Pure tests (no root): the format/adopt/refuse decision over recorded ``blkid -p -o export``
and ``lvs`` outputs (tests/fixtures; raid-member.synthetic.txt is hand-written because md
does not work on the recording machine, every other blkid file is a real recording), NVMe
identify parsing, size parsing and the grow decision.

Real tests (root): loop devices in the Debian 12 systemd test host (tests/harness). The step
code runs inside it with the repository's bingo_host on PYTHONPATH (only the standard library
is needed by the volume and swap steps).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bingo_host import blockdev
from bingo_host.steps import volume

FIXTURES = Path(__file__).parent / "fixtures"
DEV = "/dev/nvme1n1"


def blkid(name: str) -> dict[str, str]:
    found = blockdev.parse_blkid_export((FIXTURES / "blkid" / f"{name}.txt").read_text())
    found.pop("DEVNAME", None)
    return found


def lvs(name: str) -> list[blockdev.LogicalVolume]:
    return blockdev.parse_lvs((FIXTURES / "lvs" / f"{name}.txt").read_text())


# ---------------------------------------------------------------- decision table (pure)

@pytest.mark.parametrize("fixture, lv, fs, action, fstype", [
    ("blank", "none", "ext4", "format", "ext4"),
    ("blank", "none", "xfs", "format", "xfs"),
    ("ext4-bingo-db", "none", "ext4", "adopt", "ext4"),
    ("ext4-bingo-db", "none", "xfs", "adopt", "ext4"),  # our data: keep its actual type
    ("xfs-bingo-db", "none", "xfs", "adopt", "xfs"),
    ("ext4-other-label", "none", "ext4", "refuse", None),
    ("ext4-no-label", "none", "ext4", "refuse", None),
    ("xfs-other-label", "none", "xfs", "refuse", None),
    ("gpt", "none", "ext4", "refuse", None),
    ("dos", "none", "ext4", "refuse", None),
    ("lvm2-member-vg0", "vg0-mysql", "ext4", "lvm", None),
    ("lvm2-member-vg0", "other-vg", "ext4", "refuse", None),
    ("lvm2-member-vg0", "none", "ext4", "refuse", None),
    ("raid-member.synthetic", "none", "ext4", "refuse", None),
    ("swap", "none", "ext4", "refuse", None),  # labelled bingo-db, but swap
])
def test_decision_table(fixture, lv, fs, action, fstype):
    d = volume.decide(DEV, blkid(fixture), lvs(lv), fs, "bingo-db")
    assert d.action == action, d.reason
    if fstype:
        assert d.fstype == fstype
    if action == "adopt":
        assert d.uuid == blkid(fixture)["UUID"]
    if action == "lvm":
        assert d.lv_path == "/dev/vg0/mysql"


@pytest.mark.parametrize("fixture, expect", [
    ("ext4-other-label", ["TYPE=ext4", "LABEL=backups", "set volume.label to 'backups'"]),
    ("gpt", ["PTTYPE=gpt"]),
    ("dos", ["PTTYPE=dos"]),
    ("lvm2-member-vg0", ["TYPE=LVM2_member", "without the legacy vg0/mysql"]),
    ("raid-member.synthetic", ["TYPE=linux_raid_member"]),
    ("swap", ["TYPE=swap"]),
    ("ext4-no-label", ["TYPE=ext4", "label it"]),
])
def test_refusal_names_device_what_and_how(fixture, expect):
    d = volume.decide(DEV, blkid(fixture), [], "ext4", "bingo-db")
    assert d.action == "refuse"
    assert DEV in d.reason and "refuses to format" in d.reason and "wipefs -a" in d.reason
    for text in expect:
        assert text in d.reason


def test_ambivalent_probe_is_refused():
    d = volume.decide(DEV, {"AMBIVALENT": "1"}, [], "ext4", "bingo-db")
    assert d.action == "refuse" and "ambivalent" in d.reason


def test_interrupted_mkfs_xfs_looks_complete_and_only_the_marker_tells():
    # Recorded: mkfs.xfs SIGKILLed at its 5th pwrite leaves TYPE=xfs LABEL=bingo-db.
    found = blkid("xfs-interrupted-mkfs")
    marker = {"device": DEV, "fstype": "xfs", "uuid": found["UUID"], "label": "bingo-db"}
    assert volume.decide(DEV, found, [], "xfs", "bingo-db", marker).action == "format"
    # without the marker it is adopted (it is labelled), which is why the marker exists
    assert volume.decide(DEV, found, [], "xfs", "bingo-db", None).action == "adopt"


def test_marker_only_covers_its_own_device_and_uuid():
    other_uuid = {"device": DEV, "fstype": "ext4", "uuid": "not-this-one"}
    assert volume.decide(DEV, blkid("ext4-other-label"), [], "ext4", "bingo-db",
                         other_uuid).action == "refuse"
    other_dev = {"device": "/dev/nvme2n1", "fstype": "ext4",
                 "uuid": blkid("ext4-other-label")["UUID"]}
    assert volume.decide(DEV, blkid("ext4-other-label"), [], "ext4", "bingo-db",
                         other_dev).action == "refuse"
    blank_marked = {"device": DEV, "fstype": "ext4", "uuid": "x"}
    assert volume.decide(DEV, {}, [], "ext4", "bingo-db", blank_marked).action == "format"
    gpt = blkid("gpt")
    assert volume.decide(DEV, gpt, [], "ext4", "bingo-db", blank_marked).action == "refuse"


def test_blkid_export_parser_unescapes():
    assert blkid("lvm2-member-vg0")["VERSION"] == "LVM2 001"
    assert blockdev.parse_blkid_export("") == {}


def test_lvs_parser():
    assert lvs("vg0-mysql")[0] == blockdev.LogicalVolume("vg0", "mysql", "/dev/vg0/mysql")
    assert lvs("none") == []


# ---------------------------------------------------------------- NVMe identify (pure)

def identify_buffer(vid=0x1D0F, serial="vol0123456789abcdef0", model=blockdev.EBS_MODEL,
                    bdev=b"sdf") -> bytes:
    buf = bytearray(4096)
    buf[0:2] = vid.to_bytes(2, "little")
    buf[4:24] = serial.encode().ljust(20)
    buf[24:64] = model.encode().ljust(40)
    buf[3072:3072 + len(bdev)] = bdev
    buf[3072 + len(bdev):3104] = b" " * (32 - len(bdev))
    return bytes(buf)


def test_nvme_identify_parsing():
    ident = blockdev.parse_nvme_identify(identify_buffer())
    assert ident == blockdev.EbsIdentity("vol-0123456789abcdef0", "sdf")
    assert blockdev.parse_nvme_identify(identify_buffer(bdev=b"/dev/xvdg")).bdev == "sdg"
    nul_padded = bytearray(identify_buffer(bdev=b"sdh"))
    nul_padded[3075:3104] = bytes(29)
    assert blockdev.parse_nvme_identify(bytes(nul_padded)).bdev == "sdh"
    assert blockdev.parse_nvme_identify(identify_buffer(model="Amazon EC2 NVMe Instance Storage")) is None
    assert blockdev.parse_nvme_identify(identify_buffer(vid=0x8086)) is None
    with pytest.raises(ValueError):
        blockdev.parse_nvme_identify(b"\0" * 512)


def test_find_device_through_nvme_identify(tmp_path):
    bufs = {"/dev/nvme0n1": identify_buffer(bdev=b"xvda"), "/dev/nvme1n1": identify_buffer(bdev=b"sdf")}
    find = lambda name: blockdev.find_device(  # noqa: E731
        name, identify=bufs.__getitem__, nvme_devices=lambda: sorted(bufs))
    assert find("/dev/sdf") == "/dev/nvme1n1"
    assert find("/dev/xvdf") == "/dev/nvme1n1"
    assert find("/dev/sdg") is None
    assert find("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0nothere") is None


def test_aliases():
    assert blockdev.aliases("/dev/sdf") == ["/dev/sdf", "/dev/xvdf"]
    assert blockdev.aliases("/dev/xvdf") == ["/dev/xvdf", "/dev/sdf"]
    assert blockdev.aliases("/dev/loop3") == ["/dev/loop3"]


def test_wait_for_device_names_what_it_looked_for():
    with pytest.raises(volume.BingoHostError) as e:
        blockdev.wait_for_device("/dev/sdf", timeout=0.2, interval=0.05, find=lambda n: None)
    assert "/dev/sdf or /dev/xvdf" in str(e.value) and "attached as sdf" in str(e.value)


# ---------------------------------------------------------------- sizes and mounts (pure)

DUMPE2FS = "Filesystem volume name:   bingo-db\nBlock count:              262144\nBlock size:               1024\n"
XFS_INFO = """meta-data=/dev/loop0             isize=512    agcount=4, agsize=32768 blks
         =                       sectsz=512   attr=2, projid32bit=1
data     =                       bsize=4096   blocks=131072, imaxpct=25
log      =internal log           bsize=4096   blocks=16384, version=2
"""


def test_size_parsers_and_grow_decision():
    assert blockdev.parse_dumpe2fs(DUMPE2FS) == 256 << 20
    assert blockdev.parse_xfs_info(XFS_INFO) == 512 << 20
    assert not blockdev.needs_grow(256 << 20, 256 << 20)
    assert not blockdev.needs_grow((256 << 20) + (2 << 20), 256 << 20)  # < 1%: mkfs rounding
    assert blockdev.needs_grow(512 << 20, 256 << 20)


def test_mountinfo_parser():
    text = ("22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
            "99 22 7:3 / /var/lib/my\\040sql rw,noatime shared:50 - ext4 /dev/loop3 rw\n")
    table = blockdev.parse_mountinfo(text)
    m = blockdev.mounted_at("/var/lib/my sql", table)
    assert (m.major_minor, m.fstype, m.source) == ("7:3", "ext4", "/dev/loop3")
    assert blockdev.mount_containing("/swapfile", table).mountpoint == "/"
    assert blockdev.mounted_at("/srv", table) is None


def test_legacy_datadir_detection(tmp_path):
    assert not volume.is_legacy_datadir(str(tmp_path))
    (tmp_path / "lost+found").mkdir()
    assert not volume.is_legacy_datadir(str(tmp_path))
    (tmp_path / "mysql").mkdir()
    assert not volume.is_legacy_datadir(str(tmp_path))
    (tmp_path / "mysql" / "global_priv.MAI").write_text("")
    assert volume.is_legacy_datadir(str(tmp_path))
    other = tmp_path / "o"
    other.mkdir()
    (other / "ibdata1").write_text("")
    assert volume.is_legacy_datadir(str(other))
