"""What only the host can tell, read once per run: memory (the smaller of RAM and the host's
cgroup limit, memory.py) and CPUs ('auto' sizes from them), the kernel's cap on a listen queue,
where MariaDB's datadir is, and the accounts the app could run as. resolve.py reads them for a
config. The engine reads these again after a step changed the host (a mounted volume can turn
out to be a legacy datadir), never in the middle of a step.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


@dataclass(frozen=True)
class HostFacts:
    mem_bytes: int  # what the host may use: RAM, or its cgroup's limit when that is smaller
    cpus: int
    datadir: str | None = None  # None: <volume.mountpoint>/data (render.datadir says it once)
    tls_domain: str | None = None  # set once a certificate for https.domain exists
    somaxconn: int = 4096  # the kernel's cap on a socket's listen queue (4096 since Linux 5.4)


def is_legacy_datadir(root: str) -> bool:
    """True when ``root`` itself is a MariaDB datadir (the old template's layout)."""
    if os.path.isfile(os.path.join(root, "ibdata1")):
        return True
    sysdb = os.path.join(root, "mysql")
    if not os.path.isdir(sysdb):
        return False
    try:
        names = os.listdir(sysdb)
    except OSError:
        return False
    return any(n in ("user.frm", "user.MAD", "user.MYD", "db.opt") or n.startswith("global_priv.")
               for n in names)


def somaxconn(path: str = "/proc/sys/net/core/somaxconn") -> int:
    """net.core.somaxconn: uWSGI refuses to start with a listen queue above it. 128 (the
    kernel's default before 5.4) when it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 128


# -- who the app may run as --

ROOT_GROUPS = ("root", "sudo", "wheel", "admin", "docker", "lxd", "disk")  # members can become root
REGULAR_UIDS = range(1000, 60000)  # login.defs' UID_MIN..UID_MAX: below are system accounts,
                                   # above nobody (65534) and other shared ones


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    home: str
    shell: str
    groups: frozenset[str]  # the primary group's name and every group that lists the user


def account(name: str) -> Account | None:
    """The passwd/group entries of user ``name``; None when there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = {g.gr_name for g in grp.getgrall() if name in g.gr_mem or g.gr_gid == entry.pw_gid}
    return Account(name, entry.pw_uid, entry.pw_dir, entry.pw_shell, frozenset(groups))
