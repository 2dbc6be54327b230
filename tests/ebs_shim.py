"""EBS data for the systemd test host: moto's volumes backed by loop devices.

moto keeps volumes, snapshots and attachments, but no data. :class:`EbsShim`, a hook on the
EC2 proxy (tests/aws_servers.py), gives them data the way EC2 does, so what bingo-host does
to volumes through the EC2 API has the effect on the host it would have on an instance:

* CreateVolume: a sparse image of the volume's size, or a copy of its snapshot's image;
* CreateSnapshot: a copy of the volume's image, made when EC2 gets the request (bingo-host has
  locked MariaDB and frozen the mount by then: the point in time of a real EBS snapshot);
* AttachVolume: a loop device on the image and the links udev makes for it on a Nitro
  instance, ``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id>``, plus the name
  AL2023's ec2-utils gives the attachment (``/dev/sdf``) as ``/dev/disk/by-path/ebs-sdf``: the
  test host shares the machine's /dev, so the links live on a tmpfs mounted on its
  /dev/disk, inside its own mount namespace only;
* DetachVolume: refused (and recorded in ``violations``) while the device is mounted in the
  test host; otherwise the links go and the loop device is detached. AttachVolume of a volume
  still attached is refused too, as EC2 does (moto would quietly move it).

bingo-host sees nothing of this: it finds volumes by the by-id links as on EC2. Images live
under the test host's directory (so the harness' teardown detaches whatever a crashed test
left), or in ``workdir`` when they must outlive it (an instance replaced: ``move_to``). The machine keeps an empty /dev/disk directory (the mount point; udev would make it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

GIB = 1024 ** 3
BY_ID = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_"
BY_PATH = "/dev/disk/by-path/ebs-"


def attachment_link(device: str) -> str:
    """Where the shim puts the name ec2-utils would give an attachment: /dev/sdf -> ...ebs-sdf."""
    name = device.removeprefix("/dev/")
    return BY_PATH + ("sd" + name[3:] if name.startswith("xvd") else name)


def _first(form: dict, key: str) -> str | None:
    return form.get(key, [None])[0]


class EbsShim:
    def __init__(self, host, proxy, workdir: Path | None = None):
        self.proxy = proxy
        self.dir = Path(workdir or Path(host.dir) / "ebs")
        self.dir.mkdir(exist_ok=True)
        self.images: dict[str, Path] = {}  # volume id -> image
        self.snapshots: dict[str, Path] = {}  # snapshot id -> image copy
        self.loops: dict[str, tuple[str, str]] = {}  # volume id -> (loop device, attachment)
        self.violations: list[str] = []
        self._pending: dict[str, Path] = {}  # volume id -> copy of a CreateSnapshot under way
        self._lock = threading.Lock()
        self._seq = 0
        self.move_to(host)
        proxy.hooks.append(self)

    def move_to(self, host) -> None:
        """Serve this test host from now on (a replacement instance: the volumes stay, none
        may be attached)."""
        assert not self.loops, f"still attached: {self.loops}"
        self.host = host
        host.run_shell("mkdir -p /dev/disk && { mountpoint -q /dev/disk || mount -t tmpfs -o "
                       "mode=0755,size=1m bingo-ebs-links /dev/disk; } && "
                       "mkdir -p /dev/disk/by-id /dev/disk/by-path")

    # -- the proxy's hook --

    def before(self, action: str, form: dict):
        vol = _first(form, "VolumeId")
        if action == "CreateSnapshot" and vol in self.images:
            copy = self._file("snap")
            subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(self.images[vol]),
                            str(copy)], check=True)
            self._pending[vol] = copy
        elif action == "AttachVolume" and vol in self.loops:
            self.violations.append(f"AttachVolume {vol} while it is attached as {self.loops[vol][1]}")
            return 400, "VolumeInUse"  # moto would move it; EC2 refuses
        elif action == "DetachVolume" and vol in self.loops:
            loop = self.loops[vol][0]
            mounted = self.host.run(["findmnt", "-rn", "-S", loop, "-o", "TARGET"], check=False)
            if mounted.stdout.strip():
                self.violations.append(f"DetachVolume {vol} while {loop} is mounted at "
                                       f"{mounted.stdout.strip()}")
                return 400, "IncorrectState"
        return None

    def after(self, action: str, form: dict, status: int, body: bytes) -> None:
        text = body.decode(errors="replace")
        vol = _first(form, "VolumeId")
        with self._lock:
            if action == "CreateSnapshot":
                copy = self._pending.pop(vol, None)
                m = re.search(r"<snapshotId>(snap-[0-9a-f]+)</snapshotId>", text)
                if copy and status == 200 and m:
                    self.snapshots[m.group(1)] = copy
                elif copy:
                    copy.unlink(missing_ok=True)
            if status != 200:
                return
            if action == "CreateVolume":
                self._create(form, text)
            elif action == "AttachVolume" and vol in self.images:
                self._attach(vol, _first(form, "Device"))
            elif action == "DetachVolume" and vol in self.loops:
                self._detach(vol)

    # -- what EC2 does with the data --

    def _file(self, kind: str) -> Path:
        self._seq += 1
        return self.dir / f"{kind}-{self._seq}.img"

    def _create(self, form: dict, text: str) -> None:
        m = re.search(r"<volumeId>(vol-[0-9a-f]+)</volumeId>", text)
        if not m:
            return
        image = self._file("vol")
        source = self.snapshots.get(_first(form, "SnapshotId") or "")
        if source:
            subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(source), str(image)],
                           check=True)
        size = int(_first(form, "Size") or 1) * GIB
        with open(image, "ab") as f:
            if f.tell() < size:
                f.truncate(size)
        self.images[m.group(1)] = image

    def _attach(self, vol: str, device: str) -> None:
        loop = subprocess.run(["losetup", "--find", "--show", str(self.images[vol])], check=True,
                              capture_output=True, text=True).stdout.strip()
        self.loops[vol] = (loop, device)
        self.host.run(["ln", "-sfn", loop, BY_ID + vol.replace("-", "")])
        self.host.run(["ln", "-sfn", loop, attachment_link(device)])

    def _detach(self, vol: str) -> None:
        loop, device = self.loops.pop(vol)
        for link in (BY_ID + vol.replace("-", ""), attachment_link(device)):
            self.host.run(["sh", "-c", '[ "$(readlink "$1")" != "$2" ] || rm -f "$1"', "sh",
                           link, loop])
        subprocess.run(["losetup", "-d", loop], capture_output=True)

    # -- the end --

    def device(self, vol: str) -> str | None:
        """The loop device backing an attached volume."""
        return self.loops.get(vol, (None, None))[0]

    def close(self) -> None:
        """Detach every loop device and delete the images (the test host may be gone)."""
        if self in self.proxy.hooks:
            self.proxy.hooks.remove(self)
        if self.host.alive:
            loops = " ".join(loop for loop, _ in self.loops.values())
            self.host.run_shell(f"for d in {loops}; do for m in $(findmnt -rn -S $d -o TARGET); "
                                f"do umount -l $m; done; done; umount -l /dev/disk; true",
                                check=False)
        for loop, _ in self.loops.values():
            subprocess.run(["losetup", "-d", loop], capture_output=True)
        self.loops.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
