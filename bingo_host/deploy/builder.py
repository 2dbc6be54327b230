"""The build account: the app's requirements are built by it, never by root or the app user.

Building a virtualenv runs code that comes with the revision (a local sdist's setup.py, a build
backend, a module the release shadows); root never runs any of it. Each command runs as
layout.BUILD_USER (no shell, no sudo, not in the app's group) through setpriv (no supplementary
groups, no_new_privs), in the build's systemd scope, with `python -I`, in a scratch copy of the
release outside it, with only HOME, PATH, TMPDIR and the caller's pip settings: no secret
bingo-host holds reaches it. It can write only its home, its scratch directory and the one
virtualenv root lent it. Then root ends every process it still has and seals the virtualenv
(root's, not group- or other-writable, through descriptors that never follow its links, hard
links refused) before marking it complete.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .. import layout, sizing
from ..facts import systemd
from ..ops import files
from ..regular_file import read_regular
from . import DeployError

PATH = "/usr/local/bin:/usr/bin:/bin"
#: What of the caller's environment the build sees besides PIP_* (pip's own settings).
PASSED_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
PIP_CONF = "pip.conf"  # the caller's PIP_CONFIG_FILE, copied into the scratch directory
STOP_SECONDS = 10


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def account(name: str = layout.BUILD_USER) -> Account:
    """The build account; DeployError when it is missing or is root (bootstrap creates it)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise DeployError(f"the build account {name} does not exist: run `bingo-host bootstrap` "
                          "(it creates it)") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise DeployError(f"the build account {name} has uid or gid 0; it must be unprivileged")
    return Account(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def environment(who: Account, work: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The build's whole environment: nothing of the caller's but pip's settings and proxies."""
    env = {"HOME": who.home, "USER": who.name, "LOGNAME": who.name, "PATH": PATH,
           "TMPDIR": f"{work}/tmp"}
    env.update({k: v for k, v in environ.items() if k.startswith("PIP_") or k in PASSED_ENV})
    if "PIP_CONFIG_FILE" in env and env["PIP_CONFIG_FILE"] != os.devnull:
        env["PIP_CONFIG_FILE"] = f"{work}/{PIP_CONF}"  # the copy workspace() made
    return env


def command(who: Account, argv: Sequence[str], scope: Sequence[str] = ()) -> list[str]:
    """argv as the build account, in `scope` (build_scope() below): setpriv sets every uid
    and gid (real, effective, saved), clears the supplementary groups root had (gid 0 among
    them) and sets no_new_privs."""
    return [*scope, "setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups",
            "--no-new-privs", "--", *argv]


def processes(uid: int) -> list[int]:
    """Every live process any of whose uids (real, effective, saved, filesystem) is uid; not
    zombies (they hold no file and run nothing; their parent reaps them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("State:", "Uid:")))
        except OSError:
            continue  # gone meanwhile
        if len(fields) != 2:
            continue
        if str(uid) in fields["Uid"].split() and fields["State"].split()[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def stop(who: Account, timeout: float = STOP_SECONDS) -> None:
    """SIGKILL every process of the build account until none is left (a build may leave one
    behind, holding a file of the virtualenv open for writing); DeployError if they outlast
    the timeout."""
    deadline = time.monotonic() + timeout
    while pids := processes(who.uid):
        if time.monotonic() > deadline:
            raise DeployError(f"processes of the build account {who.name} outlived the build and "
                              f"could not be stopped: {' '.join(map(str, pids[:10]))}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@contextmanager
def workspace(who: Account, name: str, environ: Mapping[str, str]) -> Iterator[str]:
    """A fresh scratch directory of the build account's (layout.BUILD_WORK/name, with tmp/ and
    the caller's PIP_CONFIG_FILE copied in), removed afterwards with every process it has."""
    work = f"{layout.BUILD_WORK}/{name}"
    stop(who)  # nothing of the account runs while root prepares its directory
    os.makedirs(layout.BUILD_WORK, mode=0o755, exist_ok=True)
    _remove(work)
    os.mkdir(work, 0o700)
    try:
        os.mkdir(f"{work}/tmp", 0o700)
        conf = environ.get("PIP_CONFIG_FILE")
        if conf and conf != os.devnull:
            try:
                content = read_regular(conf)
            except OSError as exc:
                raise DeployError(f"PIP_CONFIG_FILE {conf}: {exc.strerror}") from None
            if content is None:
                raise DeployError(f"PIP_CONFIG_FILE {conf}: no such file")
            files.write_atomic(f"{work}/{PIP_CONF}", content[0], 0o600)
            os.chown(f"{work}/{PIP_CONF}", who.uid, who.gid)
        for path in (work, f"{work}/tmp"):
            os.chown(path, who.uid, who.gid)
        yield work
    finally:
        stop(who)
        _remove(work)


def _remove(path: str) -> None:
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.lexists(path):
        shutil.rmtree(path)  # never follows a link inside (fd-based on Linux)


def lend(path: str, who: Account) -> None:
    """A new, empty directory for the build account to build into (its parent stays root's)."""
    os.mkdir(path, 0o755)
    os.chown(path, who.uid, who.gid)


def seal(top: str) -> int:
    """Make the tree at top root's and read-only to everyone else: directories 0755, files
    0644, or 0755 when any execute bit was set; links root's as they are. Returns the number
    of entries. Call it only once the account has no process left (stop())."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _seal_dir(fd, top)
    finally:
        os.close(fd)


def _seal_dir(fd: int, path: str) -> int:
    os.fchown(fd, 0, 0)  # first: the account can no longer change what is in it
    os.fchmod(fd, 0o755)
    count = 1
    for name in os.listdir(fd):
        where = f"{path}/{name}"
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.chown(name, 0, 0, dir_fd=fd, follow_symlinks=False)
            count += 1
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            try:
                count += _seal_dir(sub, where)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            _seal_file(fd, name, where)
            count += 1
        else:
            raise DeployError(f"the virtualenv build left {where}, which is no file, directory "
                              "or link; refused")
    return count


def _seal_file(dir_fd: int, name: str, where: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DeployError(f"the virtualenv build left {where}, which is no regular file; refused")
        if st.st_nlink != 1:
            raise DeployError(f"the virtualenv build left {where} with {st.st_nlink} hard links "
                              "(it may be another file's); refused")
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755 if st.st_mode & 0o111 else 0o644)
    finally:
        os.close(fd)


BUILD_CPU_WEIGHT = 20  # services have 100: the build gets a sixth of contested CPU beside one
BUILD_IO_WEIGHT = 20


def build_scope(mem_bytes: int, what: str = "a deployment's virtualenv build") -> list[str]:
    """The command prefix that runs a build step (a new virtualenv, pip compiling mysqlclient on
    a nano) in a transient systemd scope beside the services (system.slice, where weights
    compete), with a fifth of their CPU and IO weight and its memory bounded, so the serving
    release keeps its latency. Output and exit status stay the command's own. Nothing when
    systemd is not running. On cgroup v1 systemd applies the weights as cpu.shares and
    blkio.weight and MemoryMax as memory.limit_in_bytes (MemoryHigh is cgroup v2's only).
    Security updates (patches.py) run in the same kind of scope."""
    if not systemd.booted():
        return []
    return ["systemd-run", "--scope", "--quiet", "--collect",
            f"--description=bingo-host: {what}",
            "-p", f"CPUWeight={BUILD_CPU_WEIGHT}", "-p", f"IOWeight={BUILD_IO_WEIGHT}",
            "-p", f"MemoryHigh={sizing.build_memory_high_mib(mem_bytes)}M",
            "-p", f"MemoryMax={sizing.build_memory_max_mib(mem_bytes)}M", "--"]
