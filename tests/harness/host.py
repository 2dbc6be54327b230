"""A throwaway Debian 12 host with systemd as PID 1, booted in namespaces on this machine.

How it works (systemd-nspawn does not work on this machine):

* the cached image (see :mod:`tests.harness.image`), kept also as an ext4 filesystem image,
  is copied (sparse) to ``CACHE_DIR/run/<id>/root.img`` and loop-mounted at ``root`` (a
  real ext4 root: swap files, fsfreeze and MariaDB behave as on EC2; overlayfs would be
  faster but cannot hold a swap file);
* ``unshare --fork --pid --mount --uts --ipc`` runs a small script that, inside the
  new (private) mount namespace, bind-mounts the root onto itself, mounts proc and
  sysfs, rbinds /dev and /sys/fs/cgroup, then ``exec chroot ROOT /lib/systemd/systemd``.
  Every mount lives in that namespace only and vanishes with it;
* systemd gets ``container=bingo-test-host`` in its environment, so it knows it is
  not alone on the kernel (``systemd-detect-virt`` says ``container-other``);
* commands run inside with ``nsenter -t PID -m -p -u -i -r -w``;
* the network namespace is the machine's on purpose: the host's nginx binds the
  machine's port 80, and 127.0.0.1 servers of the tests are reachable from inside;
  ``boot(netns=NAME)`` boots it into a namespace the test made instead (:mod:`.netns`),
  where what it does to the network (an nftables table, an address) stays.

A host in the machine's network namespace runs alone among such hosts (it needs the machine's
ports 80/443/3306): it takes the machine-wide lock exclusively. Hosts each in a namespace of their
own share nothing but the kernel and take no such lock, so several run at once, beside one in the
machine's namespace too (tests/ha_rig.py puts two or three behind a load balancer); each then has
cgroups of its own, as a capped host has, so that no two systemds take one cgroup tree for theirs.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from . import image
from . import netns as netns_mod

log = logging.getLogger("tests.harness")

RUN_DIR = image.CACHE_DIR / "run"
WHEELHOUSE = image.CACHE_DIR / "wheels"
#: Where the machine's wheelhouse is bind-mounted inside the test host.
WHEELHOUSE_INSIDE = "/var/cache/bingo-host-tests/wheels"
DEFAULT_PORTS = (80, 443, 3306)
NO_UDEV_DROPIN = "bingo-test-no-udev.conf"  # see TestHost.reboot
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root", "USER": "root", "LOGNAME": "root", "LANG": "C.UTF-8", "TERM": "dumb",
}

_BOOT_SCRIPT = r"""
set -e
R="$1"; WH="$2"
mount --make-rprivate /
# Other test hosts' roots, mounted on the machine, were copied into this namespace: let go of
# them here, or their loop devices stay busy until this host is gone.
RUN="${R%/*/root}/"
awk -v run="$RUN" 'index($5, run) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
  case "$m" in "$R"|"$R"/*) ;; *) umount -l "$m" 2>/dev/null || true;; esac
done
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t sysfs sysfs "$R/sys"
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"
mkdir -p "$R$WH_INSIDE"
mount --bind "$WH" "$R$WH_INSIDE"
exec chroot "$R" /lib/systemd/systemd --system
"""


class HarnessError(RuntimeError):
    """The test host could not be booted or managed."""


class CommandFailed(subprocess.CalledProcessError):
    """A command inside the test host exited non-zero (message has its output)."""

    def __str__(self) -> str:
        return (f"command {shlex.join(map(str, self.cmd))} exited {self.returncode} inside the test host\n"
                f"--- stdout ---\n{(self.stdout or '')[-6000:]}\n--- stderr ---\n{(self.stderr or '')[-6000:]}")


class HostPopen(subprocess.Popen):
    """Popen of a process inside the test host; signals go to the whole process group
    (``nsenter`` and the command it forked inside the PID namespace)."""

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    @property
    def inner_pid(self) -> Optional[int]:
        """Host-side PID of the command itself (the child ``nsenter`` forked), if running."""
        try:
            kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            return int(kids[0]) if kids else None
        except OSError:
            return None


@dataclass
class LoopVolume:
    """A loop device on the machine standing in for an EBS volume. /dev is shared, so
    ``device`` exists inside the test host too (there are no /dev/disk/by-* links)."""

    device: str
    backing: Path
    _host: Optional["TestHost"] = field(default=None, repr=False, compare=False)

    @property
    def attached(self) -> bool:
        r = subprocess.run(["losetup", "-j", str(self.backing)], capture_output=True, text=True)
        return any(line.startswith(self.device + ":") for line in r.stdout.splitlines())

    def detach(self) -> None:
        """``losetup -d``. Unmount it inside first; as a safety net this also unfreezes,
        swapoffs and lazily unmounts it inside the test host if that is still running.
        Idempotent."""
        host = self._host
        if host is not None and host.alive:
            script = ('for m in $(findmnt -rn -S "$1" -o TARGET); do fsfreeze -u "$m" 2>/dev/null; '
                      'umount -l "$m"; done; swapoff "$1" 2>/dev/null; true')
            try:
                host.run(["sh", "-c", script, "sh", self.device], check=False, timeout=60)
            except Exception as e:  # best effort
                log.warning("cleaning %s inside the test host failed: %s", self.device, e)
        _detach_loops([self.backing])
        if host is not None and self in host.volumes:
            host.volumes.remove(self)


def _mounts_under(path: Path) -> list[str]:
    """Mount points (host mount namespace) at or under path, deepest first."""
    prefix = str(path).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == str(path) or mp.startswith(prefix):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def _loops_backed_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    devs = []
    for bf in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            backing = bf.read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            devs.append("/dev/" + bf.parent.parent.name)
    return devs


def _detach_loops(backings: Sequence[Path] = (), under: Optional[Path] = None, wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        devs = set(_loops_backed_under(under)) if under else set()
        for b in backings:
            r = subprocess.run(["losetup", "-j", str(b)], capture_output=True, text=True)
            devs.update(line.split(":", 1)[0] for line in r.stdout.splitlines() if line)
        if not devs:
            return
        for d in devs:
            subprocess.run(["losetup", "-d", d], capture_output=True)
        if time.monotonic() > deadline:
            log.warning("loop devices still attached: %s", sorted(devs))
            return
        time.sleep(0.2)


def _swapoff_under(path: Path) -> None:
    """swapoff every swap (file under path, or loop device backed under path)."""
    loops = set(_loops_backed_under(path))
    prefix = str(path).rstrip("/") + "/"
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        name = line.split()[0].encode().decode("unicode_escape")
        if name.startswith(prefix) or name in loops:
            r = subprocess.run(["swapoff", name], capture_output=True, text=True)
            if r.returncode:
                log.warning("swapoff %s failed: %s", name, r.stderr.strip())


def _listening(ports: Sequence[int]) -> dict[int, str]:
    busy = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if cols[3] == "0A" and port in ports:
                busy[port] = cols[1]
    return busy


def _pid_start(pid: int) -> Optional[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _kill_nsenters(systemd_pid: int, cgroup: Optional[str] = None) -> int:
    """SIGKILL the machine-side ``nsenter -t PID`` wrappers of commands inside (with
    their process group, i.e. the ad-hoc commands of run()/popen() still running).

    At poweroff systemd-shutdown SIGSTOPs every process in the namespace; nsenter then
    stops itself too (it mirrors its child's stops) and never reaps the child, which
    blocks the namespace's teardown. Killed wrappers let systemd inherit and reap them.
    ``cgroup``: a capped host's cgroup, the root of its systemd's own cgroups."""
    want = str(systemd_pid).encode()
    hits = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"nsenter") and b"-t" in argv and \
                argv[argv.index(b"-t") + 1:argv.index(b"-t") + 2] == [want]:
            pid = int(p.name)
            hits += 1
            try:
                if os.getpgid(pid) == pid and pid != os.getpgrp():
                    os.killpg(pid, signal.SIGKILL)  # wrapper + the command(s) it runs inside
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # Ad-hoc processes inside (started through nsenter, so outside systemd's cgroups).
    try:
        ns = os.readlink(f"/proc/{systemd_pid}/ns/pid")
    except OSError:
        return hits
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == systemd_pid:
            continue
        try:
            if os.readlink(p / "ns/pid") != ns or \
                    (p / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            cg = [line.split(":", 2)[2] for line in (p / "cgroup").read_text().splitlines()
                  if line.split(":", 2)[1] in ("name=systemd", "")]
        except (OSError, IndexError):
            continue
        if cgroup:
            cg = [c[len(cgroup):] for c in cg if c.startswith(cgroup + "/")] or cg
        if cg and not any(c.startswith(("/system.slice", "/init.scope", "/user.slice", "/machine.slice"))
                          for c in cg):
            hits += 1
            try:
                os.kill(int(p.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return hits


CGROUP_FS = Path("/sys/fs/cgroup")
#: v1 hierarchies a capped host's systemd starts in, at one path: systemd takes its root cgroup
#: from name=systemd (unified too, in hybrid mode) and uses that path in every controller, so
#: the memory cgroup must sit at the same path or systemd moves itself out of it.
BOOT_HIERARCHIES = ("memory", "systemd", "unified")


def _make_cgroups(rel: str, memory_mb: Optional[int]) -> None:
    """/bingo-test-<id> in each of BOOT_HIERARCHIES, the memory one capped at memory_mb (None: not
    capped). Swap is not capped (no memory.memsw limit): on EC2 the swap file bingo-host adds is
    what extends a small host's memory, so it must here too."""
    if memory_mb and not (CGROUP_FS / "memory" / "memory.limit_in_bytes").exists():
        raise HarnessError(f"memory_mb needs the cgroup v1 memory controller at {CGROUP_FS / 'memory'}")
    for h in BOOT_HIERARCHIES:
        if (CGROUP_FS / h / "cgroup.procs").exists():
            (CGROUP_FS / h / rel.lstrip("/")).mkdir()
    memory = CGROUP_FS / "memory" / rel.lstrip("/")
    if memory_mb:
        (memory / "memory.use_hierarchy").write_text("1")  # every cgroup systemd makes inside counts
        (memory / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))


def _remove_cgroups(rel: str, wait: float = 10.0) -> None:
    """rmdir rel and what systemd made under it in every hierarchy, deepest first, once their
    tasks are gone."""
    tops = [h / rel.lstrip("/") for h in CGROUP_FS.iterdir() if h.is_dir() and not h.is_symlink()]
    deadline = time.monotonic() + wait
    for top in tops:
        while top.exists():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                            reverse=True) + [top]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:  # EBUSY: a task still exiting
                    break
            if top.exists():
                if time.monotonic() > deadline:
                    raise HarnessError(f"cgroup {top} still has tasks; not removing it")
                time.sleep(0.1)


def _joiner(rel: Optional[str], hierarchies: Sequence[str] = ("memory",)):
    """A Popen preexec_fn moving the child into cgroup rel of hierarchies before it execs
    (None: no cgroup)."""
    if rel is None:
        return None
    files = [str(CGROUP_FS / h / rel.lstrip("/") / "cgroup.procs") for h in hierarchies
             if (CGROUP_FS / h / rel.lstrip("/") / "cgroup.procs").exists()]

    def join() -> None:
        for procs in files:
            with open(procs, "w") as f:
                f.write("0")  # 0: the writing process itself
    return join


def _alive(pid: Optional[int], start: Optional[str]) -> bool:
    return bool(pid) and start is not None and _pid_start(pid) == start


def _teardown_dir(hostdir: Path, systemd_pid: Optional[int], systemd_start: Optional[str],
                  wait: float = 30.0) -> None:
    """Power off / kill whatever runs from hostdir and remove every trace of it."""
    try:
        cgroup = json.loads((hostdir / "owner.json").read_text()).get("cgroup")
    except (OSError, ValueError):
        cgroup = None
    _power_off(hostdir, systemd_pid, systemd_start, cgroup, wait)
    t_off = time.monotonic()
    for mp in _mounts_under(hostdir):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    _detach_loops(under=hostdir)
    if cgroup:
        _remove_cgroups(cgroup)
    if _mounts_under(hostdir):
        raise HarnessError(f"mounts remain under {hostdir}; not removing it: {_mounts_under(hostdir)}")
    t_rm = time.monotonic()
    shutil.rmtree(hostdir, ignore_errors=True)
    log.debug("teardown of %s: cleanup %.1fs, rm %.1fs", hostdir.name, t_rm - t_off,
              time.monotonic() - t_rm)


def _power_off(hostdir: Path, systemd_pid: Optional[int], systemd_start: Optional[str],
               cgroup: Optional[str], wait: float = 30.0) -> None:
    """Power off (SIGKILL after ``wait``) the systemd running from hostdir, with every swap
    under hostdir off before and after: systemd skips swapoff in a container, and a swap the
    host turned on is the machine's. Its root, volumes and cgroups stay."""
    t0 = time.monotonic()
    limit = CGROUP_FS / "memory" / (cgroup or "-").lstrip("/") / "memory.limit_in_bytes"
    if cgroup and limit.exists():  # swapoff must not push a capped host into OOM kills
        limit.write_text("-1")
    _swapoff_under(hostdir)
    if _alive(systemd_pid, systemd_start):
        # Ad-hoc commands first, and let them be gone before systemd's own shutdown starts
        # (racing them makes systemd-shutdown wait its 10 s timeout).
        quiet_deadline = time.monotonic() + 5
        while _kill_nsenters(systemd_pid, cgroup) and time.monotonic() < quiet_deadline:
            time.sleep(0.05)
        try:
            os.kill(systemd_pid, signal.SIGRTMIN + 4)  # systemd: poweroff
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while _alive(systemd_pid, systemd_start) and time.monotonic() < deadline:
            _kill_nsenters(systemd_pid, cgroup)
            time.sleep(0.1)
        log.debug("poweroff took %.1fs", time.monotonic() - t0)
        if _alive(systemd_pid, systemd_start):
            log.warning("test host did not power off within %ss: SIGKILL", wait)
            try:
                os.kill(systemd_pid, signal.SIGKILL)  # PID 1 of the namespace: takes all with it
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 15
            while _alive(systemd_pid, systemd_start) and time.monotonic() < deadline:
                _kill_nsenters(systemd_pid, cgroup)
                time.sleep(0.1)
            if _alive(systemd_pid, systemd_start):
                raise HarnessError(f"test host (pid {systemd_pid}) does not die; not removing {hostdir}")
    _swapoff_under(hostdir)


def cleanup_stale() -> list[Path]:
    """Tear down test hosts whose owning process died without shutting them down
    (e.g. a SIGKILLed pytest). Run automatically by :meth:`TestHost.boot`."""
    cleaned = []
    if not RUN_DIR.is_dir():
        return cleaned
    for d in RUN_DIR.iterdir():
        if not d.is_dir():
            continue
        try:
            meta = json.loads((d / "owner.json").read_text())
        except (OSError, ValueError):
            meta = {}
        owner = meta.get("owner_pid")
        if owner and _pid_start(owner) == meta.get("owner_start") and owner != os.getpid():
            continue  # still owned by a live process
        if owner == os.getpid() and d.name in _LIVE:
            continue
        log.warning("cleaning up stale test host %s", d)
        _teardown_dir(d, meta.get("systemd_pid"), meta.get("systemd_start"))
        cleaned.append(d)
    for name in netns_mod.cleanup_stale():  # after the hosts that ran in them
        log.warning("removed stale network namespace %s", name)
    return cleaned


_LIVE: dict[str, "TestHost"] = {}
_signals_installed = False


def _install_signal_handlers() -> None:
    """SIGTERM/SIGHUP -> KeyboardInterrupt, so pytest finalizes fixtures and atexit runs."""
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, handler)


def _atexit_all() -> None:
    for h in list(_LIVE.values()):
        try:
            h.shutdown()
        except Exception as e:  # pragma: no cover
            log.error("shutdown of test host at exit failed: %s", e)


atexit.register(_atexit_all)


class TestHost:
    """A booted test host. Create with :meth:`TestHost.boot`; always :meth:`shutdown`."""

    __test__ = False  # not a pytest test class

    def __init__(self, hostdir: Path, proc: subprocess.Popen, pid: int, lock_fd,
                 cgroup: Optional[str] = None, netns: Optional[str] = None):
        self._pid_start = _pid_start(pid)
        self.dir = hostdir                 #: CACHE_DIR/run/<id>: root/, volumes/, console.log
        self.root = hostdir / "root"       #: the host's / as a path on the machine
        self.pid = pid                     #: systemd (PID 1 inside) as a PID on the machine
        self.volumes: list[LoopVolume] = []
        #: the cgroup path (every hierarchy) of a capped host or one in a namespace of its own, else None
        self.cgroup = cgroup
        #: the network namespace (``ip netns`` name) it was booted into, None: the machine's
        self.netns = netns
        self.timings: dict[str, float] = {}
        self._proc = proc
        self._lock_fd = lock_fd
        self._closed = False
        self._testinfra = None
        self._vol_seq = 0
        self._boots = 0  # reboots with a cap: each has a cgroup of its own
        #: the memory cap (MiB) it runs with, None: none
        self.memory_mb: Optional[int] = None

    # ------------------------------------------------------------------ boot
    @classmethod
    def boot(cls, timeout: float = 120.0, ports: Sequence[int] = DEFAULT_PORTS,
             root_mode: Optional[str] = None, lock_wait: Optional[float] = None,
             memory_mb: Optional[int] = None, netns: Optional[str] = None) -> "TestHost":
        """Build/reuse the cached image, copy it, boot systemd, and wait until
        ``systemctl is-system-running`` says running or degraded.

        Raises :class:`HarnessError` if a port of ``ports`` is already listened on,
        another test host runs, or the boot does not finish within ``timeout`` seconds
        (the message then has the journal's tail).

        ``root_mode``: ``"image"`` (default; a sparse copy of the image's ext4 filesystem image,
        loop-mounted: a real ext4 root on a block device, ~1 s), ``"copy"`` (``cp -a`` of the
        image into a directory, 2-10 s) or ``"overlay"`` (overlayfs over the image, instant, but
        a swap file on / is impossible: ``swapon`` fails with EINVAL). Default from $BINGO_TESTHOST_ROOT_MODE.
        ``lock_wait``: seconds to wait for another test host on this machine to go away
        (default $BINGO_TESTHOST_LOCK_WAIT or 600), then HarnessError.
        ``memory_mb``: cap the host's memory like a small instance (a t3a.nano: 512): systemd
        starts in a v1 memory cgroup with that limit (swap not capped), and so does every
        command run()/popen() start; removed at shutdown. ``memory_cgroup`` is its path.
        ``netns``: the name of a network namespace the caller made (``ip netns add``, see
        :mod:`tests.harness.netns`) to boot into instead of the machine's: ``ports`` are then not
        checked, every command runs in it too, and the caller deletes it after :meth:`shutdown`.
        It has no route out: :meth:`install_wheel` fetches missing wheels from the machine side.
        Such hosts share the machine-wide lock: several run at once (the module docstring).
        """
        if lock_wait is None:
            lock_wait = float(os.environ.get("BINGO_TESTHOST_LOCK_WAIT", "600"))
        root_mode = root_mode or os.environ.get("BINGO_TESTHOST_ROOT_MODE", "image")
        if root_mode not in ("image", "copy", "overlay"):
            raise ValueError(f"root_mode must be 'image', 'copy' or 'overlay', not {root_mode!r}")
        if os.geteuid() != 0:
            raise PermissionError("TestHost.boot() needs root")
        if netns is not None:
            if not netns_mod.path(netns).exists():
                raise HarnessError(f"no network namespace {netns} (make it first: tests.harness.netns)")
            if netns_mod.is_machine_netns(netns_mod.path(netns)):
                raise HarnessError(f"network namespace {netns} is the machine's own")
            ports = ()
        timings = {}
        t0 = time.monotonic()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        hostdir = proc = cgroup = None
        # Only hosts in the machine's namespace exclude each other (its ports); one in a namespace
        # of its own shares a lock no host takes exclusively, so it runs beside any other.
        lock_fd = open(image.CACHE_DIR / ("netns-hosts.lock" if netns else "host.lock"), "w")
        lock_deadline = time.monotonic() + lock_wait
        while True:
            try:
                fcntl.flock(lock_fd, (fcntl.LOCK_SH if netns else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= lock_deadline:
                    lock_fd.close()
                    raise HarnessError(
                        "another bingo-host test host is running on this machine "
                        f"(lock {image.CACHE_DIR / 'host.lock'} is held; waited {lock_wait:.0f}s)") from None
                if int(time.monotonic() - t0) % 30 == 0:
                    log.info("waiting for the other test host on this machine to shut down")
                time.sleep(1)
        timings["lock_wait"] = time.monotonic() - t0
        t0 = time.monotonic()
        try:
            cleanup_stale()
            busy = _listening(ports)
            if busy:
                ss = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
                raise HarnessError(f"ports {sorted(busy)} are already in use on this machine; the test host "
                                   f"shares the machine's network and needs them free.\n{ss}")
            src = image.ensure_image()
            timings["image"] = time.monotonic() - t0
            hostdir = RUN_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            hostdir.mkdir()
            meta = {"owner_pid": os.getpid(), "owner_start": _pid_start(os.getpid())}
            if memory_mb or netns:  # recorded first: a teardown then finds it, whatever fails next
                cgroup = meta["cgroup"] = f"/bingo-test-{hostdir.name}"
            if netns:
                meta["netns"] = netns
            (hostdir / "owner.json").write_text(json.dumps(meta))
            if cgroup:
                _make_cgroups(cgroup, memory_mb)
            t1 = time.monotonic()
            if root_mode == "image":  # mounted in the machine's namespace, like the overlay
                disk = image.ensure_disk(src)
                subprocess.run(["cp", "--sparse=always", str(disk), str(hostdir / "root.img")], check=True)
                (hostdir / "root").mkdir()
                subprocess.run(["mount", "-o", "loop", str(hostdir / "root.img"), str(hostdir / "root")],
                               check=True)
            elif root_mode == "copy":
                subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(hostdir / "root")], check=True)
            else:  # mounted in the machine's namespace; teardown unmounts everything under hostdir
                for d in ("root", "upper", "work"):
                    (hostdir / d).mkdir()
                subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                f"lowerdir={src},upperdir={hostdir / 'upper'},workdir={hostdir / 'work'}",
                                str(hostdir / "root")], check=True)
            timings["copy"] = time.monotonic() - t1
            cls._prepare_root(hostdir / "root")
            WHEELHOUSE.mkdir(parents=True, exist_ok=True)
            (hostdir / "boot.sh").write_text(_BOOT_SCRIPT.replace("$WH_INSIDE", WHEELHOUSE_INSIDE))
            t2 = time.monotonic()
            proc, pid = cls._start_systemd(hostdir, cgroup, netns)
        except BaseException:
            lock_fd.close()
            if hostdir is not None:
                pid = locals().get("pid")
                _teardown_dir(hostdir, pid, _pid_start(pid) if pid else None, wait=10)
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            raise
        host = cls(hostdir, proc, pid, lock_fd, cgroup, netns)
        host.memory_mb = memory_mb or None
        _LIVE[hostdir.name] = host
        _install_signal_handlers()
        try:
            host._wait_running(timeout)
        except BaseException:
            host.shutdown()
            raise
        timings["boot"] = time.monotonic() - t2
        timings["total"] = time.monotonic() - t0 + timings["lock_wait"]
        host.timings = timings
        log.info("test host up (pid %s, root %s): %s", pid, host.root,
                 ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        return host

    @classmethod
    def _start_systemd(cls, hostdir: Path, cgroup: Optional[str],
                       netns: Optional[str]) -> tuple[subprocess.Popen, int]:
        """Start systemd on hostdir/root (boot.sh) in cgroup and netns; (unshare's Popen, systemd's
        PID), both recorded in owner.json. The console log is appended to: a reboot keeps the
        boots before it."""
        with open(hostdir / "console.log", "ab") as console:
            enter_net = ["nsenter", f"--net={netns_mod.path(netns)}"] if netns else []
            proc = subprocess.Popen(
                enter_net + ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--propagation", "private",
                 "sh", str(hostdir / "boot.sh"), str(hostdir / "root"), str(WHEELHOUSE)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_joiner(cgroup, BOOT_HIERARCHIES),
                # container=: systemd then skips machine-wide steps (swapoff of every swap,
                # detaching every loop device at poweroff, fstrim of host file systems).
                env={"PATH": DEFAULT_ENV["PATH"], "LANG": "C.UTF-8", "container": "bingo-test-host"})
        try:
            pid = cls._wait_for_systemd_pid(proc, hostdir)
        except BaseException:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
        meta = json.loads((hostdir / "owner.json").read_text())
        meta.update(systemd_pid=pid, systemd_start=_pid_start(pid), unshare_pid=proc.pid)
        (hostdir / "owner.json").write_text(json.dumps(meta))
        return proc, pid

    def reboot(self, memory_mb: Optional[int] = None, timeout: float = 120.0) -> None:
        """Power systemd off and boot it again on the same root, as an instance is stopped and
        started: the root (its swap file too), the attached volumes and the network namespace
        stay; processes, mounts and /run do not. Every swap under the host is off before the
        power-off ends, as at shutdown. ``memory_mb``: the cap of the next boot (in a new
        cgroup; the old one is removed), e.g. another instance type; None keeps the cap it had.
        Waits until systemd says running or degraded, as boot() does.

        There is no udev to announce devices: an fstab mount by UUID (the data volume's) waits for
        a device unit that never comes, 90 s by default. Its device unit gets a drop-in that
        gives up after 1 s (NO_UDEV_DROPIN), so the mount fails at once and what needs it (MariaDB)
        fails with it, where on EC2 both would start; bootstrap's volume step mounts it later."""
        if not self.alive:
            raise HarnessError("the test host is not running")
        t0 = time.monotonic()
        old = self.cgroup
        _power_off(self.dir, self.pid, self._pid_start, old)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._testinfra = None
        self.memory_mb = memory_mb or self.memory_mb
        meta = json.loads((self.dir / "owner.json").read_text())
        if old:
            _remove_cgroups(old)
            meta.pop("cgroup")
        self.cgroup = None
        if self.memory_mb or self.netns:  # recorded first: a teardown then finds it, whatever fails next
            self._boots += 1
            self.cgroup = meta["cgroup"] = f"/bingo-test-{self.dir.name}-{self._boots}"
        (self.dir / "owner.json").write_text(json.dumps(meta))
        if self.cgroup:
            _make_cgroups(self.cgroup, self.memory_mb)
        for vol in self.volumes:
            uuid = subprocess.run(["blkid", "-s", "UUID", "-o", "value", vol.device], capture_output=True,
                                  text=True).stdout.strip()
            if uuid:
                unit = "dev-disk-by\\x2duuid-" + uuid.replace("-", "\\x2d") + ".device"
                dropin = self.root / "etc/systemd/system" / f"{unit}.d" / NO_UDEV_DROPIN
                dropin.parent.mkdir(parents=True, exist_ok=True)
                dropin.write_text("# tests.harness: no udev announces this device; do not wait for it\n"
                                  "[Unit]\nJobRunningTimeoutSec=1s\n")
        t1 = time.monotonic()
        self._proc, self.pid = self._start_systemd(self.dir, self.cgroup, self.netns)
        self._pid_start = _pid_start(self.pid)
        self._wait_running(timeout)
        self.timings.update(reboot_off=t1 - t0, reboot_boot=time.monotonic() - t1)
        log.info("test host rebooted (pid %s, memory cap %s): off %.1fs, boot %.1fs", self.pid,
                 f"{self.memory_mb} MiB" if self.memory_mb else "none", t1 - t0, time.monotonic() - t1)

    @staticmethod
    def _prepare_root(root: Path) -> None:
        etc = root / "etc"
        for name in ("resolv.conf",):
            (etc / name).unlink(missing_ok=True)
            shutil.copy2(f"/etc/{name}", etc / name)
        if Path("/etc/pip.conf").exists():
            shutil.copy2("/etc/pip.conf", etc / "pip.conf")
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.exists():
            dst = etc / "ssl/certs/ca-certificates.crt"
            dst.unlink(missing_ok=True)
            shutil.copy2(bundle, dst)
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")

    @staticmethod
    def _wait_for_systemd_pid(proc: subprocess.Popen, hostdir: Path, wait: float = 20.0) -> int:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HarnessError(f"test host exited during boot (rc {proc.returncode}):\n"
                                   + (hostdir / "console.log").read_text(errors="replace")[-4000:])
            try:
                kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                if kids and os.readlink(f"/proc/{kids[0]}/exe").endswith("/systemd"):
                    return int(kids[0])
            except OSError:
                pass
            time.sleep(0.05)
        raise HarnessError("systemd did not start in the test host:\n"
                           + (hostdir / "console.log").read_text(errors="replace")[-4000:])

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HarnessError(f"test host died during boot (rc {self._proc.returncode}):\n"
                                   + (self.dir / "console.log").read_text(errors="replace")[-4000:])
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=30)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
                    log.warning("test host is degraded; failed units:\n%s", failed.stdout)
                return
            time.sleep(0.2)
        diag = self.run_shell("systemctl list-jobs --no-pager; systemctl --failed --no-pager; "
                              "journalctl -b --no-pager -n 60", check=False, timeout=60)
        raise HarnessError(f"test host not up within {timeout}s (is-system-running: {state!r})\n"
                           f"{diag.stdout}{diag.stderr}")

    @property
    def memory_cgroup(self) -> Optional[Path]:
        """The v1 memory cgroup capping the host (its limit, usage, memory.oom_control), or None."""
        return CGROUP_FS / "memory" / self.cgroup.lstrip("/") if self.cgroup and self.memory_mb else None

    # ------------------------------------------------------------ commands
    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None

    def _nsenter(self) -> list[str]:
        if not self.alive:
            raise HarnessError("the test host is not running")
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-r", "-w"] + \
            (["-n"] if self.netns else [])

    @staticmethod
    def _env(env: Optional[Mapping[str, str]]) -> dict[str, str]:
        return {**DEFAULT_ENV, **(env or {})}

    def run(self, cmd: Sequence[str], input: Union[str, bytes, None] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = 300,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run ``cmd`` (argv list) as root inside the test host, in its PID/mount/UTS/IPC
        namespaces and root. ``env`` is merged over a clean root environment
        (:data:`DEFAULT_ENV`; the machine's environment is not passed). Returns a text
        ``CompletedProcess``; ``check=True`` raises :class:`CommandFailed` (message has
        stdout/stderr); on timeout the command's process group is killed and
        ``subprocess.TimeoutExpired`` raised."""
        cmd = [str(c) for c in cmd]
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.Popen(self._nsenter() + cmd, env=self._env(env), start_new_session=True,
                             preexec_fn=_joiner(self.cgroup),
                             stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = p.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, out.decode(errors="replace"),
                                            err.decode(errors="replace")) from None
        except BaseException:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            raise
        r = subprocess.CompletedProcess(cmd, p.returncode, out.decode(errors="replace"),
                                        err.decode(errors="replace"))
        if check and r.returncode != 0:
            raise CommandFailed(r.returncode, cmd, r.stdout, r.stderr)
        return r

    def run_shell(self, script: str, **kw) -> subprocess.CompletedProcess:
        """:meth:`run` of ``/bin/sh -c script``."""
        return self.run(["/bin/sh", "-c", script], **kw)

    def popen(self, cmd: Sequence[str], env: Optional[Mapping[str, str]] = None, **kw) -> HostPopen:
        """Start ``cmd`` inside in the background. Defaults: stdin /dev/null, stdout/stderr
        PIPE, text mode (override with Popen keywords). ``kill()``/``terminate()``/
        ``send_signal()`` signal the command inside too (whole process group)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return HostPopen(self._nsenter() + [str(c) for c in cmd], env=self._env(env),
                         start_new_session=True, preexec_fn=_joiner(self.cgroup), **kw)

    def interactive(self, cmd: Sequence[str] = ("/bin/bash", "-l")) -> int:
        """Run cmd inside attached to this terminal; returns its exit code."""
        return subprocess.call(self._nsenter() + list(cmd), env=self._env({"TERM": os.environ.get("TERM", "xterm")}),
                               preexec_fn=_joiner(self.cgroup))

    # --------------------------------------------------------------- files
    def put_file(self, path: str, content: Union[str, bytes], mode: int = 0o644) -> None:
        """Write ``content`` to ``path`` inside (parents created, owner root)."""
        self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"',
                  "sh", path, format(mode, "o")], input=content)

    def read_file(self, path: str) -> str:
        """Content of ``path`` inside, as text."""
        return self.run(["cat", path]).stdout

    def install_wheel(self, wheel_path: Union[str, Path], venv: str = "/opt/bingo-host/venv") -> str:
        """Create ``venv`` with the host's python3 (if absent), pip install the wheel
        (dependencies from a machine-wide wheelhouse, filled from PyPI when something is
        missing) and symlink ``/usr/local/bin/bingo-host`` to the venv's script.
        Returns the venv path."""
        wheel = Path(wheel_path)
        inside = f"/tmp/bingo-wheels/{wheel.name}"
        self.put_file(inside, wheel.read_bytes())
        # The dependency lock the wheel carries, as hosts install it (bingo_host/install_floor.py).
        lock = "/tmp/bingo-wheels/constraints.txt"
        with zipfile.ZipFile(wheel) as z:
            self.put_file(lock, z.read("bingo_host/constraints.txt"))
        if self.run(["test", "-x", f"{venv}/bin/python"], check=False).returncode:
            self.run(["python3", "-m", "venv", venv])
        pip = [f"{venv}/bin/pip", "install", "--disable-pip-version-check", "--constraint", lock]
        offline = pip + ["--no-index", "--find-links", WHEELHOUSE_INSIDE, inside]
        if self.run(offline, check=False, timeout=600).returncode:
            download = [f"{venv}/bin/pip", "download", "--disable-pip-version-check",
                        "--constraint", lock, "-d", WHEELHOUSE_INSIDE, inside]
            if self.netns:
                self._run_in_root_outside(download, timeout=600)
            else:
                self.run(download, timeout=600)
            self.run(["rm", "-f", f"{WHEELHOUSE_INSIDE}/{wheel.name}"])
            self.run(offline, timeout=600)
        self.run_shell(f'if [ -e {venv}/bin/bingo-host ]; then ln -sf {venv}/bin/bingo-host '
                       f'/usr/local/bin/bingo-host; fi')
        return venv

    def _run_in_root_outside(self, cmd: Sequence[str], timeout: float) -> None:
        """Run ``cmd`` chrooted into the host's root but in the machine's network namespace
        (with the wheelhouse, proc and /dev in a private mount namespace): how a host in a
        namespace of its own fills the wheelhouse from PyPI, as the other hosts do from inside."""
        script = ('set -e; R="$1"; shift; mount --make-rprivate /; mount -t proc proc "$R/proc"; '
                  f'mount --rbind /dev "$R/dev"; mount --bind {shlex.quote(str(WHEELHOUSE))} '
                  f'"$R{WHEELHOUSE_INSIDE}"; exec chroot "$R" "$@"')
        r = subprocess.run(["unshare", "--mount", "--fork", "sh", "-c", script, "sh", str(self.root),
                            *[str(c) for c in cmd]], env=self._env(None), capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode:
            raise CommandFailed(r.returncode, list(cmd), r.stdout, r.stderr)

    # ------------------------------------------------------------- volumes
    def attach_volume(self, size_mb: int = 256) -> LoopVolume:
        """A fresh sparse file of ``size_mb`` MiB on the machine, attached with
        ``losetup --find --show``. Detached at :meth:`shutdown` if still attached."""
        voldir = self.dir / "volumes"
        voldir.mkdir(exist_ok=True)
        self._vol_seq += 1
        backing = voldir / f"vol-{self._vol_seq}.img"
        with open(backing, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        dev = subprocess.run(["losetup", "--find", "--show", str(backing)],
                             check=True, capture_output=True, text=True).stdout.strip()
        vol = LoopVolume(device=dev, backing=backing, _host=self)
        self.volumes.append(vol)
        return vol

    # ------------------------------------------------------------ testinfra
    @property
    def testinfra(self):
        """A ``testinfra.host.Host`` whose commands run inside this test host."""
        if self._testinfra is None:
            import testinfra.host
            from .testinfra_backend import NsenterBackend
            self._testinfra = testinfra.host.Host(NsenterBackend(self))
        return self._testinfra

    # ------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 30.0) -> None:
        """Power off (SIGRTMIN+4; SIGKILL after ``timeout``), swapoff swaps under the
        root, unmount leftovers, detach loop devices, remove the copy. Idempotent."""
        if self._closed:
            return
        t0 = time.monotonic()
        try:
            _teardown_dir(self.dir, self.pid, self._pid_start, wait=timeout)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._proc.wait(timeout=10)
        finally:
            self._closed = True
            self.volumes.clear()
            _LIVE.pop(self.dir.name, None)
            self._lock_fd.close()
        self.timings["shutdown"] = time.monotonic() - t0
        log.info("test host shut down in %.1fs", self.timings["shutdown"])

    def __enter__(self) -> "TestHost":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<TestHost pid={self.pid} root={self.root} {'up' if self.alive else 'down'}>"
