"""The build account: the app's requirements are built by it, never by root or the app user.

Building a virtualenv runs code that comes with the revision (a local sdist's setup.py, a build
backend); root never runs any of it. Each command (uv, bingo-host's own pinned copy) runs as
layout.BUILD_USER (no shell, no sudo, not in the app's group) through setpriv (no supplementary
groups, no_new_privs), in the build's systemd scope, in a scratch copy of the release outside
it, with only HOME, PATH, TMPDIR, proxies and uv's index settings from the caller: no secret
bingo-host holds reaches it. It can write only its home, its scratch directory, its uv cache and
the one virtualenv root lent it. Then root ends every process it still has and seals the
virtualenv (root's, not group- or other-writable, through descriptors that never follow its
links) before marking it complete.

uv hard-links files from its cache (the account's, on the virtualenv's file system) into the
virtualenv. Sealing such a file seals its inode: the cache's name for it becomes root's and
read-only as well, so the account (stopped, unprivileged) can neither write nor chmod it after,
only unlink its own name, which leaves the virtualenv's untouched. So a file with more than one
link is sealed only when it is the account's own (the kernel's protected_hardlinks lets it link
only files it owns or can read and write; one it does not own may be another's and is refused),
or left as it is when already sealed (root:root 0644 or 0755: another virtualenv's, or a second
name in this one). A sealed cache file can no longer be linked by the account: uv copies it
into later virtualenvs instead.
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
from . import DeployError

PATH = "/usr/local/bin:/usr/bin:/bin"
#: What of the caller's environment the build sees: proxies, CA bundles, and uv's settings of
#: where packages come from (a mirror); not those bingo-host decides (cache, offline, config).
PASSED_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_INDEX_URL",
              "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_INDEX_STRATEGY", "UV_INSECURE_HOST",
              "UV_HTTP_TIMEOUT", "UV_HTTP_RETRIES", "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_BUILDS")
STOP_SECONDS = 10
#: Modes a sealed file has: one with another link and exactly these is already sealed.
SEALED_MODES = (0o644, 0o755)


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
    """The build's whole environment: nothing of the caller's but PASSED_ENV."""
    env = {"HOME": who.home, "USER": who.name, "LOGNAME": who.name, "PATH": PATH,
           "TMPDIR": f"{work}/tmp"}
    env.update({k: v for k, v in environ.items() if k in PASSED_ENV})
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
def workspace(who: Account, name: str, inputs: Mapping[str, str] | None = None) -> Iterator[str]:
    """A fresh scratch directory of the build account's (layout.BUILD_WORK/name, with tmp/ and
    `inputs`, name: content, written 0600 by root before the account gets the directory), removed
    afterwards with every process it has."""
    work = f"{layout.BUILD_WORK}/{name}"
    stop(who)  # nothing of the account runs while root prepares its directory
    os.makedirs(layout.BUILD_WORK, mode=0o755, exist_ok=True)
    _remove(work)
    os.mkdir(work, 0o700)
    try:
        os.mkdir(f"{work}/tmp", 0o700)
        for entry, content in (inputs or {}).items():
            files.write_atomic(f"{work}/{entry}", content, 0o600)
            os.chown(f"{work}/{entry}", who.uid, who.gid)
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


def keep(path: str, who: Account) -> None:
    """The account's own directory that outlives builds (its uv cache): made if missing, made
    the account's and 0700 again before each build (the app user never reads or writes it; a
    build that opened it up is closed again). Its parent is root's, so the account cannot put
    a link in its place."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        _remove(path)
    if not os.path.isdir(path):
        os.mkdir(path, 0o700)
    os.chown(path, who.uid, who.gid, follow_symlinks=False)
    os.chmod(path, 0o700)


def forget(path: str) -> None:
    """Remove the account's kept directory (see keep()); only while none of its processes runs."""
    _remove(path)


def seal(top: str, owner: int) -> int:
    """Make the tree at top root's and read-only to everyone else: directories 0755, files
    0644, or 0755 when any execute bit was set; links root's as they are. A file with other
    hard links is sealed only when it is `owner`'s (the build account's uid), left when already
    sealed, else refused (see the module's docstring). Returns the number of entries. Call it
    only once the account has no process left (stop())."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _seal_dir(fd, top, owner)
    finally:
        os.close(fd)


def _seal_dir(fd: int, path: str, owner: int) -> int:
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
                count += _seal_dir(sub, where, owner)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            _seal_file(fd, name, where, owner)
            count += 1
        else:
            raise DeployError(f"the virtualenv build left {where}, which is no file, directory "
                              "or link; refused")
    return count


def _seal_file(dir_fd: int, name: str, where: str, owner: int) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DeployError(f"the virtualenv build left {where}, which is no regular file; refused")
        if st.st_nlink != 1 and st.st_uid != owner:
            if (st.st_uid, st.st_gid) == (0, 0) and stat.S_IMODE(st.st_mode) in SEALED_MODES:
                return  # already sealed: nothing to change
            raise DeployError(f"the virtualenv build left {where} with {st.st_nlink} hard links, "
                              "a file that is not the build account's (it may be another's); refused")
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755 if st.st_mode & 0o111 else 0o644)
    finally:
        os.close(fd)


BUILD_CPU_WEIGHT = 20  # services have 100: the build gets a sixth of contested CPU beside one
BUILD_IO_WEIGHT = 20


def build_scope(mem_bytes: int, what: str = "a deployment's virtualenv build") -> list[str]:
    """The command prefix that runs a build step (a new virtualenv, uv compiling mysqlclient on
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
