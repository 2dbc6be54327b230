"""Build and cache the Debian 12 root file system that every test host boots.

The image is built once per machine with ``debootstrap`` and kept under
``CACHE_DIR/images/<name>-<recipe hash>/rootfs``.  The hash covers everything
that shapes the image (suite, mirror, package lists, setup script), so a change
to the recipe builds a new image on the next boot; images of other recipes are
pruned once no boot has used them for a day (worktrees of other branches share the cache).

A build goes into a ``.build-*`` temp dir that is renamed into place only when
complete, so an interrupted build never leaves a half-built cache behind.
Concurrent builders serialise on a lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger("tests.harness")

#: Root of everything the harness keeps on the machine (images, wheelhouse, running hosts).
CACHE_DIR = Path(os.environ.get("BINGO_TESTHOST_CACHE", "/var/cache/bingo-host-tests"))

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"

#: Installed in the image.
BASE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "python3-pip",
    "ca-certificates", "iproute2", "procps", "util-linux", "e2fsprogs", "xfsprogs",
    "curl", "sudo", "less",
    # The real CodeDeploy agent's codedeploy-local (../shared/tools/install-codedeploy-local
    # --packages) and the unzip it unpacks zip revisions with.
    "ruby", "ruby-minitar", "ruby-zip", "ruby-logging", "ruby-aws-sdk-core", "ruby-aws-sdk-s3",
    "ruby-concurrent", "unzip",
]

#: Only downloaded into /var/cache/apt/archives (NOT installed): the product installs
#: them, and tests must see that happen, but locally and fast.
PREDOWNLOAD_PACKAGES = [
    "nginx", "mariadb-server", "mariadb-client", "python3-venv", "python3-dev",
    "build-essential", "libmariadb-dev", "pkg-config", "certbot", "python3-certbot-nginx",
    "unattended-upgrades", "needrestart",  # the patches step's (bingo-host patch)
    "nftables",  # the firewall step's (the app user's metadata-service block)
]

#: An image of another recipe (another branch's worktree) is pruned once unused this long:
#: worktrees on one machine then do not delete each other's image on every build.
PRUNE_UNUSED_SECONDS = 24 * 3600

#: Units that wait forever, or touch the whole machine, in a container without udev/ttys.
MASKED_UNITS = [
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-hwdb-update.service",
    "getty@.service", "serial-getty@.service", "console-getty.service",
    "container-getty@.service", "getty-static.service", "getty.target",
    "systemd-firstboot.service",
    "systemd-ask-password-console.path", "systemd-ask-password-console.service",
    "systemd-ask-password-wall.path", "systemd-ask-password-wall.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount", "systemd-modules-load.service",
]

SETUP_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

cat > /etc/apt/sources.list <<EOF
deb @MIRROR@ @SUITE@ main
deb @MIRROR@ @SUITE@-updates main
deb @SECURITY_MIRROR@ @SUITE@-security main
EOF

# Keep downloaded .debs (the pre-downloaded set must survive), never auto-clean.
rm -f /etc/apt/apt.conf.d/docker-clean
cat > /etc/apt/apt.conf.d/90bingo-test-host <<'EOF'
// bingo-host test host: non-interactive apt, keep downloaded packages.
Acquire::Check-Valid-Until "false";
APT::Get::Assume-Yes "true";
APT::Keep-Downloaded-Packages "true";
Binary::apt::APT::Keep-Downloaded-Packages "true";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
EOF
echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections

echo bingo-test-host > /etc/hostname
cat > /etc/hosts <<'EOF'
127.0.0.1 localhost
127.0.1.1 bingo-test-host
::1 localhost ip6-localhost ip6-loopback
EOF
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

for u in @MASKED_UNITS@; do ln -sf /dev/null "/etc/systemd/system/$u"; done
systemctl set-default multi-user.target

apt-get update -q
apt-get install -y -q --download-only @PREDOWNLOAD@
ls /var/cache/apt/archives/*.deb >/dev/null
rm -f /etc/resolv.conf
: > /etc/resolv.conf
"""


def _setup_script() -> str:
    return (
        SETUP_SCRIPT.replace("@MIRROR@", MIRROR)
        .replace("@SECURITY_MIRROR@", SECURITY_MIRROR)
        .replace("@SUITE@", SUITE)
        .replace("@MASKED_UNITS@", " ".join(MASKED_UNITS))
        .replace("@PREDOWNLOAD@", " ".join(PREDOWNLOAD_PACKAGES))
    )


def recipe() -> dict:
    """Everything that determines the image's content."""
    return {
        "format": 1,
        "suite": SUITE,
        "variant": "minbase",
        "mirror": MIRROR,
        "base_packages": BASE_PACKAGES,
        "predownload_packages": PREDOWNLOAD_PACKAGES,
        "setup_script": _setup_script(),
    }


def recipe_key() -> str:
    blob = json.dumps(recipe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def image_dir() -> Path:
    """Directory of the current recipe's image (``rootfs`` inside it); may not exist yet."""
    return CACHE_DIR / "images" / f"{SUITE}-{recipe_key()}"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionError("the bingo-host test harness needs root")


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    log.info("installing debootstrap with apt-get")
    subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_image(force: bool = False) -> Path:
    """Return the cached image's rootfs, building it first if needed (~1-2 min)."""
    _require_root()
    final = image_dir()
    if not force and (final / "rootfs").is_dir():
        os.utime(final)  # in use: see PRUNE_UNUSED_SECONDS
        return final / "rootfs"
    images = CACHE_DIR / "images"
    images.mkdir(parents=True, exist_ok=True)
    with open(images / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another builder may be at it: wait for it
        if force and final.exists():
            shutil.rmtree(final)
        if (final / "rootfs").is_dir():
            return final / "rootfs"
        for stale in images.glob(".build-*"):  # half builds of interrupted runs
            shutil.rmtree(stale, ignore_errors=True)
        _ensure_debootstrap()
        build = images / f".build-{final.name}-{os.getpid()}"
        build.mkdir()
        rootfs = build / "rootfs"
        t0 = time.monotonic()
        log.info("building test host image %s (debootstrap %s, ~1-2 min)", final.name, SUITE)
        logf = build / "build.log"
        with open(logf, "w") as out:
            try:
                subprocess.run(
                    ["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                     SUITE, str(rootfs), MIRROR],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True)
                shutil.copy2("/etc/resolv.conf", rootfs / "etc/resolv.conf")
                # Mounts live in a private mount namespace and vanish with it.
                subprocess.run(
                    ["unshare", "--mount", "--fork", "sh", "-c",
                     'set -e; mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; '
                     'exec chroot "$1" /bin/sh -s', "sh", str(rootfs)],
                    input=_setup_script().encode(), stdout=out, stderr=subprocess.STDOUT,
                    check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
            except subprocess.CalledProcessError as e:
                tail = logf.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"building the test host image failed ({e}); log tail:\n{tail}") from e
        (build / "recipe.json").write_text(json.dumps(recipe(), indent=2, sort_keys=True))
        os.rename(build, final)  # atomic: the cache is either complete or absent
        log.info("image built in %.1fs: %s", time.monotonic() - t0, final)
        for old in images.iterdir():  # prune images of other recipes no boot used lately
            if old.is_dir() and old != final and not old.name.startswith(".") and \
                    time.time() - old.stat().st_mtime > PRUNE_UNUSED_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
    return final / "rootfs"


DISK_SIZE = "8G"  # sparse: only what the root holds is written; room for packages, venvs, swap


def ensure_disk(rootfs: Path) -> Path:
    """An ext4 filesystem image holding a copy of ``rootfs`` (built once, next to it, ~10 s).
    A host's root is a sparse copy of this one file, loop-mounted: one sequential copy and one
    unlink per host instead of ``cp -a`` and ``rm -r`` of ~17,000 files (6 s and 3 s here)."""
    disk = rootfs.parent / "root.ext4"
    if disk.is_file():
        return disk
    with open(rootfs.parent.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if disk.is_file():
            return disk
        t0 = time.monotonic()
        tmp = disk.with_name(f".root.ext4-{os.getpid()}")
        mnt = disk.with_name(f".root.mnt-{os.getpid()}")
        try:
            subprocess.run(["truncate", "-s", DISK_SIZE, str(tmp)], check=True)
            # Inode tables and journal zeroed now, not by ext4lazyinit in every host's copy.
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "testroot",
                            "-E", "lazy_itable_init=0,lazy_journal_init=0", str(tmp)], check=True)
            mnt.mkdir()
            subprocess.run(["mount", "-o", "loop", str(tmp), str(mnt)], check=True)
            try:
                subprocess.run(["cp", "-a", f"{rootfs}/.", str(mnt)], check=True)
            finally:
                subprocess.run(["umount", str(mnt)], check=True)
            os.rename(tmp, disk)
        finally:
            tmp.unlink(missing_ok=True)
            if mnt.is_dir():
                mnt.rmdir()
        log.info("root disk image built in %.1fs: %s", time.monotonic() - t0, disk)
    return disk
