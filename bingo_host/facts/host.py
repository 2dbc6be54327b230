"""What only the host can tell, read once per run: memory (the smaller of RAM and the host's
cgroup limit, memory.py) and CPUs ('auto' sizes from them), where MariaDB's datadir is, which
TLS domain has a certificate; and the config with every 'auto' resolved from them. The engine reads these again after a step changed the host (a
mounted volume can turn out to be a legacy datadir), never in the middle of a step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import sizing
from . import memory

if TYPE_CHECKING:  # the volume step's probes import this module without PyYAML around
    from ..config import Config
    from .platforms import Platform


@dataclass(frozen=True)
class HostFacts:
    mem_bytes: int  # what the host may use: RAM, or its cgroup's limit when that is smaller
    cpus: int
    datadir: str | None = None  # None: <volume.mountpoint>/data (render.datadir says it once)
    tls_domain: str | None = None  # set once a certificate for https.domain exists


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
                     tls_domain=tls_domain(cfg))


def app_user(cfg: Config, platform: Platform) -> str:
    if cfg.app.user != "auto":
        return cfg.app.user
    return platform.app_user or cfg.app.name


def resolve(cfg: Config, platform: Platform, facts: HostFacts) -> Config:
    """cfg with every 'auto' replaced by what it means on this platform and host."""
    from ..config import with_values

    processes = cfg.app.processes
    if processes == "auto":
        processes = sizing.uwsgi_processes(facts.mem_bytes, facts.cpus)
    swap = cfg.swap.size if cfg.swap.size != "auto" else sizing.swap_mib(facts.mem_bytes)
    return with_values(
        cfg,
        platform=platform.name,
        app={"user": app_user(cfg, platform), "processes": processes},
        swap={"size": swap},
    )
