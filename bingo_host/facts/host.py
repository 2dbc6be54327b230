"""What only the host can tell, read once per run: memory (the smaller of RAM and the host's
cgroup limit, memory.py) and CPUs ('auto' sizes from them), the kernel's cap on a listen queue,
where MariaDB's datadir is, which TLS domain has a certificate; and the config with every 'auto'
resolved from them. The engine reads these again after a step changed the host (a mounted volume
can turn out to be a legacy datadir), never in the middle of a step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import sizing
from . import memory, sudo

if TYPE_CHECKING:  # the volume step's probes import this module without PyYAML around
    from ..config import Config
    from .platforms import Platform


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


def host_facts(cfg: Config) -> HostFacts:
    """This host's facts for cfg: a legacy volume mounted at volume.mountpoint keeps its root
    as the datadir; https.domain (or the one enable-https recorded) once its certificate exists."""
    from ..state import tls_domain

    mountpoint = cfg.volume.mountpoint
    legacy = os.path.ismount(mountpoint) and is_legacy_datadir(mountpoint)
    return HostFacts(mem_bytes=memory.read().usable_bytes,
                     cpus=os.cpu_count() or 1, datadir=mountpoint if legacy else None,
                     tls_domain=tls_domain(cfg), somaxconn=somaxconn())


def somaxconn(path: str = "/proc/sys/net/core/somaxconn") -> int:
    """net.core.somaxconn: uWSGI refuses to start with a listen queue above it. 128 (the
    kernel's default before 5.4) when it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 128


def app_user(cfg: Config) -> str:
    """app.user, or for 'auto' the dedicated system user bingo-host creates, named after the app
    (the same on every platform: never a login user such as ec2-user, who can sudo)."""
    return cfg.app.name if cfg.app.user == "auto" else cfg.app.user


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
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = {g.gr_name for g in grp.getgrall() if name in g.gr_mem or g.gr_gid == entry.pw_gid}
    return Account(name, entry.pw_uid, entry.pw_dir, entry.pw_shell, frozenset(groups))


def app_user_problem(acct: Account, cfg: Config, platform: Platform,
                     sudo_rules: tuple[str, ...]) -> str | None:
    """Why the app must not run as ``acct`` (None: it may). An exploit of the web app gets this
    user's rights, so it is never one that is, or can become, root or another service; nor one
    sudo lets run anything (sudo_rules: what `sudo -l -U` lists for it, facts/sudo.py)."""
    if acct.uid == 0:
        return "is root (uid 0)"
    if acct.name in (platform.mariadb_user, platform.nginx_user):
        service = "the database's" if acct.name == platform.mariadb_user else "nginx's"
        return f"is {service} user"
    privileged = [g for g in ROOT_GROUPS if g in acct.groups]
    if privileged:
        return f"is in the {' and '.join(privileged)} group{'s' * (len(privileged) > 1)}, whose " \
               "members can become root"
    if sudo_rules:
        more = f" and {len(sudo_rules) - 1} more" if len(sudo_rules) > 1 else ""
        return f"may run commands through sudo (`sudo -l -U {acct.name}`: {sudo_rules[0]}{more})"
    dedicated = acct.home == cfg.app.root and os.path.basename(acct.shell) in ("nologin", "false")
    if acct.uid not in REGULAR_UIDS and not dedicated:
        return (f"is a system account (uid {acct.uid}) that bingo-host did not create for the app "
                f"(its home is {acct.home}, not {cfg.app.root}, or it has a login shell)")
    return None


def check_app_user(cfg: Config, platform: Platform) -> None:
    """Refuse (ConfigError, exit 2) an app user that exists and must not run the app; one that
    does not exist yet is created by the app step as a dedicated system user."""
    from ..errors import ConfigError

    name = app_user(cfg)
    acct = account(name)
    problem = acct and app_user_problem(acct, cfg, platform, sudo.rules(name))
    if not problem:
        return
    if cfg.app.user == "auto":
        raise ConfigError("app.name", f"the app runs as the user named after it, {name}, which "
                                      f"{problem}; choose another app.name or set app.user")
    raise ConfigError("app.user", f"{name} {problem}; leave app.user at auto (a dedicated system "
                                  "user named after the app) or name an unprivileged user")


def resolve(cfg: Config, platform: Platform, facts: HostFacts) -> Config:
    """cfg with every 'auto' replaced by what it means on this platform and host."""
    from ..config import with_values

    processes = cfg.app.processes
    if processes == "auto":
        processes = sizing.uwsgi_processes(facts.mem_bytes, facts.cpus)
    swap = cfg.swap.size if cfg.swap.size != "auto" else sizing.swap_mib(facts.mem_bytes)
    agent = cfg.cloudwatch_agent.enabled
    if agent == "auto":
        agent = not sizing.small_host(facts.mem_bytes)
    return with_values(
        cfg,
        platform=platform.name,
        app={"user": app_user(cfg), "processes": processes},
        swap={"size": swap},
        cloudwatch_agent={"enabled": agent},
    )
