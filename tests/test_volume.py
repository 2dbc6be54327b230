"""The data volume step.

Pure tests (no root): the format/adopt/refuse decision over recorded ``blkid -p -o export``
and ``lvs`` outputs (tests/fixtures; raid-member.synthetic.txt is hand-written because md
does not work on the recording machine, every other blkid file is a real recording), NVMe
identify parsing, size parsing and the grow decision. The step's decisions on recorded hosts
(adopt, refuse, mounted elsewhere, interrupted or stale mkfs, grow, legacy LVM) are
tests/steps/volume/'s cases.

Real tests (root): what needs a kernel (mkfs, mount, a killed mkfs, online grow) on loop devices
in the Debian 12 systemd test host (tests/harness). The step code runs inside it with the
repository's bingo_host on PYTHONPATH (only the standard library is needed by the volume and
swap steps).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bingo_host.facts import ebs, mounts, signatures, sizes
from bingo_host.facts.host import is_legacy_datadir
from bingo_host.converge.steps import volume
from tests.step_host import SRC_INSIDE, run_step  # vhost: that plugin's fixture

FIXTURES = Path(__file__).parent / "fixtures"
DEV = "/dev/nvme1n1"


def blkid(name: str) -> dict[str, str]:
    found = signatures.parse_blkid_export((FIXTURES / "blkid" / f"{name}.txt").read_text())
    found.pop("DEVNAME", None)
    return found


def lvs(name: str) -> list[signatures.LogicalVolume]:
    return signatures.parse_lvs((FIXTURES / "lvs" / f"{name}.txt").read_text())


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
    assert signatures.parse_blkid_export("") == {}


def test_lvs_parser():
    assert lvs("vg0-mysql")[0] == signatures.LogicalVolume("vg0", "mysql", "/dev/vg0/mysql")
    assert lvs("none") == []


# ---------------------------------------------------------------- NVMe identify (pure)

def identify_buffer(vid=0x1D0F, serial="vol0123456789abcdef0", model=ebs.EBS_MODEL,
                    bdev=b"sdf") -> bytes:
    buf = bytearray(4096)
    buf[0:2] = vid.to_bytes(2, "little")
    buf[4:24] = serial.encode().ljust(20)
    buf[24:64] = model.encode().ljust(40)
    buf[3072:3072 + len(bdev)] = bdev
    buf[3072 + len(bdev):3104] = b" " * (32 - len(bdev))
    return bytes(buf)


def test_nvme_identify_parsing():
    ident = ebs.parse_nvme_identify(identify_buffer())
    assert ident == ebs.EbsIdentity("vol-0123456789abcdef0", "sdf")
    assert ebs.parse_nvme_identify(identify_buffer(bdev=b"/dev/xvdg")).bdev == "sdg"
    nul_padded = bytearray(identify_buffer(bdev=b"sdh"))
    nul_padded[3075:3104] = bytes(29)
    assert ebs.parse_nvme_identify(bytes(nul_padded)).bdev == "sdh"
    assert ebs.parse_nvme_identify(identify_buffer(model="Amazon EC2 NVMe Instance Storage")) is None
    assert ebs.parse_nvme_identify(identify_buffer(vid=0x8086)) is None
    with pytest.raises(ValueError):
        ebs.parse_nvme_identify(b"\0" * 512)


def test_find_device_through_nvme_identify(tmp_path):
    bufs = {"/dev/nvme0n1": identify_buffer(bdev=b"xvda"), "/dev/nvme1n1": identify_buffer(bdev=b"sdf")}
    find = lambda name: ebs.find_device(  # noqa: E731
        name, identify=bufs.__getitem__, nvme_devices=lambda: sorted(bufs))
    assert find("/dev/sdf") == "/dev/nvme1n1"
    assert find("/dev/xvdf") == "/dev/nvme1n1"
    assert find("/dev/sdg") is None
    assert find("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0nothere") is None


def test_aliases():
    assert ebs.aliases("/dev/sdf") == ["/dev/sdf", "/dev/xvdf"]
    assert ebs.aliases("/dev/xvdf") == ["/dev/xvdf", "/dev/sdf"]
    assert ebs.aliases("/dev/loop3") == ["/dev/loop3"]


def test_wait_for_device_names_what_it_looked_for():
    with pytest.raises(volume.BingoHostError) as e:
        ebs.wait_for_device("/dev/sdf", timeout=0.2, interval=0.05, find=lambda n: None)
    assert "/dev/sdf or /dev/xvdf" in str(e.value) and "attached as sdf" in str(e.value)


# ---------------------------------------------------------------- sizes and mounts (pure)

DUMPE2FS = "Filesystem volume name:   bingo-db\nBlock count:              262144\nBlock size:               1024\n"
XFS_INFO = """meta-data=/dev/loop0             isize=512    agcount=4, agsize=32768 blks
         =                       sectsz=512   attr=2, projid32bit=1
data     =                       bsize=4096   blocks=131072, imaxpct=25
log      =internal log           bsize=4096   blocks=16384, version=2
"""


def test_size_parsers_and_grow_decision():
    assert sizes.parse_dumpe2fs(DUMPE2FS) == 256 << 20
    assert sizes.parse_xfs_info(XFS_INFO) == 512 << 20
    assert not sizes.needs_grow(256 << 20, 256 << 20)
    assert not sizes.needs_grow((256 << 20) + (2 << 20), 256 << 20)  # < 1%: mkfs rounding
    assert sizes.needs_grow(512 << 20, 256 << 20)


def test_device_size_is_read_from_sysfs_through_symlinks(tmp_path):
    (tmp_path / "sys" / "nvme1n1").mkdir(parents=True)
    (tmp_path / "sys" / "nvme1n1" / "size").write_text("16777216\n")
    (tmp_path / "nvme1n1").touch()
    (tmp_path / "sdf").symlink_to(tmp_path / "nvme1n1")  # as EBS's /dev/sdf -> nvme1n1
    assert sizes.size_bytes(str(tmp_path / "sdf"), sys_block=str(tmp_path / "sys")) == 8 << 30
    with pytest.raises(volume.BingoHostError, match=r"sdg: cannot read its size from .*/sdg/size"):
        sizes.size_bytes(str(tmp_path / "sdg"), sys_block=str(tmp_path / "sys"))


def test_device_size_matches_blockdev_on_a_loop_device(machine_loop):
    dev, _ = machine_loop
    blockdev = subprocess.run(["blockdev", "--getsize64", dev], capture_output=True, text=True,
                              check=True).stdout
    assert sizes.size_bytes(dev) == int(blockdev) == 64 << 20


def test_mountinfo_parser():
    text = ("22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
            "99 22 7:3 / /var/lib/my\\040sql rw,noatime shared:50 - ext4 /dev/loop3 rw\n")
    table = mounts.parse_mountinfo(text)
    m = mounts.mounted_at("/var/lib/my sql", table)
    assert (m.major_minor, m.fstype, m.source) == ("7:3", "ext4", "/dev/loop3")
    assert mounts.mount_containing("/swapfile", table).mountpoint == "/"
    assert mounts.mounted_at("/srv", table) is None


def test_legacy_datadir_detection(tmp_path):
    assert not is_legacy_datadir(str(tmp_path))
    (tmp_path / "lost+found").mkdir()
    assert not is_legacy_datadir(str(tmp_path))
    (tmp_path / "mysql").mkdir()
    assert not is_legacy_datadir(str(tmp_path))
    (tmp_path / "mysql" / "global_priv.MAI").write_text("")
    assert is_legacy_datadir(str(tmp_path))
    other = tmp_path / "o"
    other.mkdir()
    (other / "ibdata1").write_text("")
    assert is_legacy_datadir(str(other))


# ---------------------------------------------------------------- in-use devices (this machine)

def test_what_is_not_a_block_device_is_refused(tmp_path):
    assert "is not a block device (it is a character device)" in mounts.unsafe_reason("/dev/null", "/srv/db")
    (tmp_path / "disk.img").write_bytes(b"\0" * 4096)
    assert "is not a block device" in mounts.unsafe_reason(str(tmp_path / "disk.img"), "/srv/db")
    assert "cannot be read" in mounts.unsafe_reason(str(tmp_path / "missing"), "/srv/db")


def _disk_of(dev: str) -> str:
    """The whole disk a partition belongs to (the device itself when it is a disk)."""
    sysdir = os.path.realpath(f"/sys/class/block/{os.path.basename(os.path.realpath(dev))}")
    return "/dev/" + os.path.basename(os.path.dirname(sysdir) if os.path.isfile(f"{sysdir}/partition")
                                      else sysdir)


def test_the_root_disk_is_refused():
    root = mounts.mounted_at("/")
    if not root.source.startswith("/dev/") or not os.path.exists(root.source):
        pytest.skip(f"/ is not on a block device here ({root.source})")
    for dev in {root.source, _disk_of(root.source)}:
        reason = mounts.unsafe_reason(dev, "/var/lib/mysql")
        assert reason and "the root filesystem is mounted from it at /" in reason, dev


@pytest.fixture
def machine_loop(tmp_path):
    """A loop device on this machine (partitions scanned) and a place to mount it; undone after."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    image = tmp_path / "disk.img"
    image.write_bytes(b"")
    os.truncate(image, 64 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", "-P", str(image)], check=True, text=True,
                         capture_output=True).stdout.strip()
    mnt = tmp_path / "elsewhere"
    mnt.mkdir()
    try:
        yield dev, str(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=True)


def test_a_device_mounted_elsewhere_is_refused_but_not_at_its_own_mountpoint(machine_loop):
    dev, mnt = machine_loop
    subprocess.run(["mkfs.ext4", "-q", "-L", "bingo-db", dev], check=True)
    assert mounts.unsafe_reason(dev, "/srv/db") is None  # not mounted anywhere yet
    subprocess.run(["mount", dev, mnt], check=True)
    reason = mounts.unsafe_reason(dev, "/srv/db")
    assert reason == f"{dev} is in use: {dev} (ext4) is mounted from it at {mnt}"
    assert mounts.unsafe_reason(dev, mnt) is None  # the data volume, already where it belongs


def test_a_disk_whose_partition_is_mounted_is_refused(machine_loop):
    dev, mnt = machine_loop
    subprocess.run(["sfdisk", "-q", dev], input="label: gpt\n,,L\n", text=True, check=True)
    subprocess.run(["partx", "-u", dev], capture_output=True)  # in case -P missed the new table
    part = f"{dev}p1"
    for _ in range(50):
        if os.path.exists(part):
            break
        time.sleep(0.1)
    subprocess.run(["mkfs.ext4", "-q", part], check=True)
    subprocess.run(["mount", part, mnt], check=True)
    assert mounts.stacked_devices(dev) >= {mounts.dev_numbers(dev), mounts.dev_numbers(part)}
    assert mounts.unsafe_reason(dev, "/srv/db") == f"{dev} is in use: {part} (ext4) is mounted from it at {mnt}"


# ---------------------------------------------------------------- real: systemd test host

class Vol:
    """A loop volume plus a per-test mount point; undone at the end even on failure."""

    def __init__(self, host, n: int, size_mb: int):
        self.host = host
        self.mountpoint = f"/srv/db{n}"
        self.loop = host.attach_volume(size_mb=size_mb)
        self.device = self.loop.device

    def cfg(self, fs="ext4", label="bingo-db") -> dict:
        return {"volume": {"device": self.device, "mountpoint": self.mountpoint,
                           "filesystem": fs, "label": label}}

    def converge(self, **kw) -> dict:
        return run_step(self.host, "volume", **{**self.cfg(**kw)})

    def sh(self, script: str, check=True):
        return self.host.run(["bash", "-c", script, "bash", self.device, self.mountpoint],
                             check=check)

    def blkid(self) -> dict:
        r = self.host.run(["blkid", "-p", "-o", "export", self.device], check=False)
        return signatures.parse_blkid_export(r.stdout)

    def mounted(self) -> mounts.Mount | None:
        return mounts.mounted_at(self.mountpoint,
                                   mounts.parse_mountinfo(self.host.read_file("/proc/self/mountinfo")))

    def fstab(self) -> str:
        return self.host.read_file("/etc/fstab")

    def cleanup(self):
        self.host.run_shell(
            f"umount -l {self.mountpoint} 2>/dev/null; "
            f"sed -i '\\# {self.mountpoint} .*# bingo-host$#d' /etc/fstab; "
            "rm -f /var/lib/bingo-host/mkfs-in-progress /usr/local/sbin/mkfs.ext4 "
            "/usr/local/sbin/mkfs.xfs; systemctl daemon-reload", check=False)
        self.loop.detach()


@pytest.fixture
def vol(vhost):
    made = []

    def factory(size_mb=256):
        v = Vol(vhost, len(made) + 1 + int(time.time() * 1000) % 100000, size_mb)
        made.append(v)
        return v

    yield factory
    for v in made:
        v.cleanup()


def test_blank_volume_formatted_mounted_and_stays_mounted(vol):
    v = vol(256)
    first = v.converge()
    assert first["error"] is None, first["error"]
    assert any(c.startswith(f"create ext4 labelled bingo-db on {v.device}") for c in first["changes"])
    probe = v.blkid()
    assert (probe["TYPE"], probe["LABEL"]) == ("ext4", "bingo-db")
    line = f"UUID={probe['UUID']} {v.mountpoint} ext4 defaults,nofail,noatime 0 2 # bingo-host"
    assert line in v.fstab().splitlines()
    m = v.mounted()
    assert m is not None and m.fstype == "ext4"
    assert first["legacy_datadir"] is False
    # without udev systemd never sees the device unit: the mount must survive a reload
    v.host.run(["systemctl", "daemon-reload"])
    time.sleep(2)
    assert v.mounted() is not None, v.host.run_shell(
        f"systemctl status $(systemd-escape -p --suffix=mount {v.mountpoint})", check=False).stdout
    second = v.converge()
    assert second["changes"] == [] and second["error"] is None
    assert second["reason"] == f"ext4 bingo-db (UUID {probe['UUID']}) on {v.device} mounted at {v.mountpoint}"
    print(f"TIMING volume blank->mounted {first['seconds']:.2f}s, rerun {second['seconds']:.2f}s")


def _sha(v, path) -> str:
    return v.sh(f"sha256sum {path}").stdout.split()[0]


# a partial mkfs.xfs: its first 64 KiB (superblock with our label and UUID) reach the device
WRAP_PARTIAL_XFS = r'''#!/bin/bash
dev="${@: -1}"; args=("${@:1:$#-1}")
rm -f /tmp/partial.img; truncate -s "$(blockdev --getsize64 "$dev")" /tmp/partial.img
/usr/sbin/mkfs.xfs "${args[@]}" /tmp/partial.img
dd if=/tmp/partial.img of="$dev" bs=64K count=1 conv=notrunc,fsync status=none
touch /run/mkfs-wrapper-sleeping
sleep 300
'''


def test_mkfs_xfs_killed_after_its_superblock_then_rerun_converges(vol):
    """What a killed mkfs.xfs leaves looks like a finished filesystem of ours: only the marker,
    written before mkfs, tells (an ext4 mkfs killed in bootstrap: test_bootstrap_recovery)."""
    fs, wrapper = "xfs", WRAP_PARTIAL_XFS
    v = vol(320)
    mkfs = f"mkfs.{fs}"
    v.host.put_file(f"/usr/local/sbin/{mkfs}", wrapper.replace("{mkfs}", mkfs), mode=0o755)
    v.host.run(["rm", "-f", "/run/mkfs-wrapper-sleeping"])
    arg = json.dumps({"step": "volume", **v.cfg(fs=fs)})
    p = v.host.popen(["python3", f"{SRC_INSIDE}/run_step.py", arg])
    try:
        deadline = time.monotonic() + 60
        while v.host.run(["test", "-e", "/run/mkfs-wrapper-sleeping"], check=False).returncode:
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        marker = json.loads(v.host.read_file("/var/lib/bingo-host/mkfs-in-progress"))
        assert marker["device"] == v.device
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    v.host.run(["rm", "-f", f"/usr/local/sbin/{mkfs}"])
    seen = v.blkid()  # a labelled filesystem with the UUID bingo-host chose: without the
    # marker it would be adopted as is
    assert (seen.get("TYPE"), seen.get("LABEL"), seen.get("UUID")) == (fs, "bingo-db", marker["uuid"])
    out = v.converge(fs=fs)
    assert out["error"] is None, out["error"]
    assert any(c.startswith(f"create {fs}") and "interrupted" in c for c in out["changes"]), out["changes"]
    probe = v.blkid()
    assert probe["TYPE"] == fs and probe["UUID"] != marker["uuid"]
    assert v.mounted() is not None
    assert v.host.run(["test", "-e", "/var/lib/bingo-host/mkfs-in-progress"], check=False).returncode
    v.sh('touch "$2/written-after" && sync')
    assert v.converge(fs=fs)["changes"] == []


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE = 24
    return False


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_enlarged_volume_is_grown(vol, fs):
    if fs == "ext4" and not _has_cap_sys_resource():
        pytest.skip("online ext4 resize (EXT4_IOC_RESIZE_FS) needs CAP_SYS_RESOURCE, which "
                    "this machine's root does not have")
    v = vol(320)
    assert v.converge(fs=fs)["error"] is None
    v.sh('head -c 1000000 /dev/urandom > "$2/data" && sync')
    sha = _sha(v, f"{v.mountpoint}/data")
    os.truncate(v.loop.backing, 640 << 20)
    subprocess.run(["losetup", "-c", v.device], check=True)
    out = v.converge(fs=fs)
    assert out["error"] is None, out["error"]
    assert any(c.startswith(f"grow {fs} on {v.device} from") for c in out["changes"]), out["changes"]
    size = int(v.sh('findmnt -bno SIZE "$2"').stdout)
    assert size > 550 << 20
    assert _sha(v, f"{v.mountpoint}/data") == sha
    assert v.converge(fs=fs)["changes"] == []
