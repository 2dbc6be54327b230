"""A config resolved for this host: every 'auto' replaced by what it means on this platform, with
these memory and CPUs, and the app user checked against the host's accounts. Its own type, so
that render can refuse a config nobody resolved and nobody resolves one twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from . import sizing, sizing_record
from .config import Config, to_dict, with_values
from .errors import ConfigError
from .facts import platforms, sudo
from .facts.host import (REGULAR_UIDS, ROOT_GROUPS, Account, HostFacts, account, is_legacy_datadir,
                         somaxconn)
from .facts.platforms import Platform
from .state import tls_domain


def host_facts(cfg: Config) -> HostFacts:
    """This host's facts for cfg: a legacy volume mounted at volume.mountpoint keeps its root
    as the datadir; https.domain (or the one enable-https recorded) once its certificate exists."""
    mountpoint = cfg.volume.mountpoint
    legacy = os.path.ismount(mountpoint) and is_legacy_datadir(mountpoint)
    inputs = sizing_record.current()  # the same read as the boot's resize check
    return HostFacts(mem_bytes=inputs.mem_bytes, cpus=inputs.cpus, datadir=mountpoint if legacy else None,
                     tls_domain=tls_domain(cfg), somaxconn=somaxconn())


def machine_facts(cfg: Config, mem_bytes: int | None, cpus: int | None) -> tuple[HostFacts, str]:
    """The facts 'auto' is sized from, and a note saying whose: this host's, or for a preview
    another machine's memory and CPUs (None: this host's), seen as a fresh host (no legacy
    datadir, no certificate yet, the kernel's default cap on a listen queue): what render and
    `config check` show for a machine they do not run on."""
    here = host_facts(cfg)
    if mem_bytes is None and cpus is None:
        return here, "on this host"
    mem = here.mem_bytes if mem_bytes is None else mem_bytes
    count = here.cpus if cpus is None else cpus
    note = (f"with {mem // sizing.MIB} MiB{' (this host)' * (mem_bytes is None)} and {count} "
            f"CPU{'s' * (count > 1)}{' (this host)' * (cpus is None)}")
    return HostFacts(mem_bytes=mem, cpus=count), note


def app_user(cfg: Config) -> str:
    """app.user, or for 'auto' the dedicated system user bingo-host creates, named after the app
    (the same on every platform: never a login user such as ec2-user, who can sudo)."""
    return cfg.app.name if cfg.app.user == "auto" else cfg.app.user


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


@dataclass(frozen=True)
class ResolvedConfig(Config):
    """A Config with no 'auto' left that resolve() decides; made by resolve() only (once per
    command, in context.make_context)."""

    def __post_init__(self):
        left = [name for name, value in (
            ("platform", self.platform), ("app.user", self.app.user),
            ("app.processes", self.app.processes), ("swap.size", self.swap.size),
            ("cloudwatch_agent.enabled", self.cloudwatch_agent.enabled)) if value == "auto"]
        if left:
            raise TypeError(f"ResolvedConfig with {', '.join(left)} still 'auto': make it with resolve()")


def resolve(cfg: Config, platform: Platform, facts: HostFacts) -> ResolvedConfig:
    """cfg with every 'auto' replaced by what it means on this platform and host."""
    if isinstance(cfg, ResolvedConfig):
        raise TypeError("the config is resolved already: 'auto' is resolved once per command "
                        "(context.make_context)")
    processes = cfg.app.processes
    if processes == "auto":
        processes = sizing.uwsgi_processes(facts.mem_bytes, facts.cpus)
    swap = cfg.swap.size if cfg.swap.size != "auto" else sizing.swap_mib(facts.mem_bytes)
    agent = cfg.cloudwatch_agent.enabled
    if agent == "auto":
        agent = not sizing.small_host(facts.mem_bytes)
    done = with_values(
        cfg,
        platform=platform.name,
        app={"user": app_user(cfg), "processes": processes},
        swap={"size": swap},
        cloudwatch_agent={"enabled": agent},
    )
    return ResolvedConfig(**{f.name: getattr(done, f.name) for f in fields(Config)})


def effective(cfg: Config, platform_name: str | None = None, mem_bytes: int | None = None,
              cpus: int | None = None) -> tuple[dict, str]:
    """What `config check` prints: cfg (read with load_config(on_host=True)) as a dict with
    'auto' resolved for platform_name (default: the config's, this host's users checked too)
    where there is a platform to resolve it against, and for this host's memory and CPUs or
    those given (machine_facts); and a note saying which."""
    try:
        platform = platforms.get(platform_name or cfg.platform)
    except ConfigError:  # validating on a workstation: nothing to resolve 'auto' against
        return to_dict(cfg), "'auto' left unresolved (no platform detected: --platform names one)"
    facts, where = machine_facts(cfg, mem_bytes, cpus)
    if not platform_name and where == "on this host":  # for this very host: its users count too
        check_app_user(cfg, platform)
    return to_dict(resolve(cfg, platform, facts)), f"'auto' resolved for {platform.name} {where}"
