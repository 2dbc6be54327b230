"""Every file bingo-host manages, rendered from config_templates/ with the validated config.

This module only computes content; writing it (atomically, only on change) is ops/files.py's job,
and each file's ``on_change`` becomes an owed action once the context writes it.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import cloudwatch_agent, layout, sizing
from .config import Config
from .facts.host import HostFacts
from .facts.platforms import Platform
from .ops.service import DAEMON_RELOAD, RELOAD_APP, RELOAD_NGINX, restart
from .resolve import ResolvedConfig

HEADER = "Managed by bingo-host: local changes are overwritten by `bingo-host bootstrap`."
PASSWORD_PLACEHOLDER = "<set-by-bootstrap>"


@dataclass(frozen=True)
class ManagedFile:
    path: str
    content: str
    mode: int
    owner: str
    group: str
    on_change: str | None  # RELOAD_NGINX, restart("mariadb"), ... or None
    template: str
    secret: bool = False  # never show its content in a diff or log


def template_dir() -> Path:
    """config_templates/ ships inside the wheel as bingo_host/config_templates."""
    packaged = Path(__file__).with_name("config_templates")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "config_templates"


def datadir(cfg: Config, facts: HostFacts) -> str:
    """MariaDB's datadir: the host's (a legacy volume's root), else <volume.mountpoint>/data."""
    return facts.datadir or f"{cfg.volume.mountpoint}/data"


_bytecode_dir: str | None = None


def use_bytecode_cache(directory: str) -> bool:
    """Keep the compiled templates in `directory` between runs: compiling them is about a fifth
    of a converged bootstrap. Jinja executes what it finds there, so only a directory that only
    root can write is used (created 0700, a link or another owner refused); False if not used."""
    global _bytecode_dir
    if os.geteuid() != 0:
        return False
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            return False
        if st.st_mode & 0o077:
            os.chmod(directory, 0o700)
    except OSError:
        return False
    _bytecode_dir = directory
    _environment.cache_clear()
    return True


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2  # here: 4 of 5 `bingo-host hook` events import render and never render (measured: ~25 ms)

    env = jinja2.Environment(
        bytecode_cache=jinja2.FileSystemBytecodeCache(_bytecode_dir) if _bytecode_dir else None,
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["ini"] = ini_value
    return env


def db_ssl(cfg: Config) -> str | None:
    """bingo.ini's [database] ssl: JSON the app turns into its SQLAlchemy URL's query, where
    `ssl_ca` becomes the driver's ssl={"ca": ...}: PyMySQL then checks the chain and the host
    name, mysqlclient (libmariadb) the chain. (The app drops `ssl_mode`, and a key without the
    `ssl_` prefix would reach the driver as an unknown keyword.)"""
    if cfg.database.local or not cfg.database.tls_ca:
        return None
    return json.dumps({"ssl_ca": cfg.database.tls_ca})


def references_secrets(cfg: Config) -> bool:
    """Whether a rendered value lives in SSM or Secrets Manager (and may rotate there)."""
    return any(source.startswith(("ssm:", "secretsmanager:"))
               for source in (cfg.database.password, cfg.musicbingo.secret_key, cfg.smtp.password)
               if source)


def ini_value(value) -> str:
    """A bingo.ini value: the app reads it with ConfigParser's interpolation, so '%' is '%%'."""
    return str(value).replace("%", "%%")


def render_all(
    cfg: ResolvedConfig,
    platform: Platform,
    facts: HostFacts,
    db_password: str = PASSWORD_PLACEHOLDER,
    secret_key: str = PASSWORD_PLACEHOLDER,
    smtp_password: str = PASSWORD_PLACEHOLDER,
    app_slot: str = layout.SLOTS[0],
    app_release: str | None = None,
) -> list[ManagedFile]:
    """The files this config wants on this host, in a stable order. Only a resolved config: a
    template cannot tell what 'auto' means here. The app's vassal is the one for `app_slot`
    (layout.SLOTS: the slot that serves, or the one a switch starts), loading release
    `app_release` (None: the one `current` points at, for a render away from a host)."""
    if not isinstance(cfg, ResolvedConfig):
        raise TypeError(f"render_all needs a ResolvedConfig (resolve.resolve), not {type(cfg).__name__}")
    user = cfg.app.user
    context = {
        "header": HEADER,
        "cfg": cfg,
        "platform": platform,
        "app_user": user,
        "app_group": user,
        "processes": cfg.app.processes,
        "listen": sizing.uwsgi_listen(facts.somaxconn),
        "server_names": " ".join(cfg.app.server_name),
        "socket": layout.app_socket(cfg.app.name),
        "slot": app_slot,
        "release_dir": f"{cfg.app.root}/releases/{app_release}" if app_release else f"{cfg.app.root}/current",
        "slot_socket": layout.slot_socket(cfg.app.name, app_slot),
        "slot_socket_name": os.path.basename(layout.slot_socket(cfg.app.name, app_slot)),
        "slot_fifo": layout.slot_fifo(cfg.app.name, app_slot),
        "slot_stats": layout.slot_stats(cfg.app.name, app_slot),
        "slot_bind_record": layout.slot_bind_record(cfg.app.name, app_slot),
        "master_fifo_dir": layout.app_fifo_dir(cfg.app.name),
        "runtime_dir_name": Path(layout.UWSGI_RUNTIME_DIR).name,
        "uwsgi_venv": layout.UWSGI_VENV,
        "vassals_dir": layout.VASSALS_DIR,
        "bin": layout.BIN,
        "db_password": db_password,
        "secret_key": secret_key,
        "smtp_password": smtp_password,
        "db_ssl": db_ssl(cfg),
        "health_module": layout.HEALTH_MODULE,
        "health_dir": layout.HEALTH_WSGI_DIR,
        "datadir": datadir(cfg, facts),
        "innodb_buffer_pool_mib": sizing.innodb_buffer_pool_mib(facts.mem_bytes),
        "max_connections": sizing.mariadb_max_connections(cfg.app.processes),
        "small_host": sizing.small_host(facts.mem_bytes),
        "tls": {"domain": facts.tls_domain} if facts.tls_domain else None,
        "log_dir": layout.LOG_DIR,
        "state_dir": layout.STATE_DIR,
        "uwsgi_service": layout.UWSGI_SERVICE,
        "resize_unit": f"{layout.RESIZE_UNIT}.service",
        "firewall_unit": layout.FIREWALL_UNIT,
        "firewall_rules": layout.FIREWALL_RULES,
        "metadata_addresses": f"{layout.IMDS_ADDRESS} {layout.IMDS_ADDRESS_IPV6}",
    }
    root = cfg.app.root
    unit = f"{layout.SYSTEMD_DIR}/{{}}"
    wanted = [
        # template, path, mode, owner, group, on_change, secret
        ("bingo.ini", f"{root}/shared/bingo.ini", 0o640, "root", user, RELOAD_APP, True),
        ("placeholder.html", f"{root}/placeholder/build/index.html", 0o644, "root", "root", None, False),
        ("nginx-site.conf", f"{platform.nginx_conf_d}/{cfg.app.name}.conf", 0o644, "root", "root",
         RELOAD_NGINX, False),
        ("uwsgi-emperor.service", unit.format(f"{layout.UWSGI_SERVICE}.service"), 0o644, "root", "root",
         restart(layout.UWSGI_SERVICE), False),
        ("uwsgi-vassal.ini", layout.slot_vassal_file(cfg.app.name, app_slot), 0o644, "root", "root", None, False),
        ("certbot-renew.service", unit.format(f"{layout.RENEW_UNIT}.service"), 0o644, "root", "root",
         DAEMON_RELOAD, False),
        ("certbot-renew.timer", unit.format(f"{layout.RENEW_UNIT}.timer"), 0o644, "root", "root",
         DAEMON_RELOAD, False),
        ("resize.service", unit.format(f"{layout.RESIZE_UNIT}.service"), 0o644, "root", "root",
         DAEMON_RELOAD, False),
    ]
    if cfg.firewall.enabled:
        wanted.append(("firewall.service", unit.format(f"{layout.FIREWALL_UNIT}.service"), 0o644, "root",
                       "root", DAEMON_RELOAD, False))
    if platform.nginx_main_conf:
        wanted.append(("nginx-main.conf", platform.nginx_main_conf, 0o644, "root", "root", RELOAD_NGINX,
                       False))
    if cfg.database.local:
        wanted += [
            ("mariadb-server.cnf", f"{platform.mariadb_conf_d}/zz-bingo-host.cnf", 0o644, "root", "root",
             restart(platform.mariadb_service), False),
            ("mariadb-mount.conf", unit.format(f"{platform.mariadb_service}.service.d/bingo-host.conf"),
             0o644, "root", "root", restart(platform.mariadb_service), False),
        ]
    if cfg.snapshots.enabled:
        wanted += [
            ("snapshot.service", unit.format(f"{layout.SNAPSHOT_UNIT}.service"), 0o644, "root", "root",
             DAEMON_RELOAD, False),
            ("snapshot.timer", unit.format(f"{layout.SNAPSHOT_UNIT}.timer"), 0o644, "root", "root",
             DAEMON_RELOAD, False),
        ]
    if references_secrets(cfg):
        wanted += [
            ("secrets-refresh.service", unit.format(f"{layout.REFRESH_UNIT}.service"), 0o644, "root", "root",
             DAEMON_RELOAD, False),
            ("secrets-refresh.timer", unit.format(f"{layout.REFRESH_UNIT}.timer"), 0o644, "root", "root",
             DAEMON_RELOAD, False),
        ]
    if cfg.backups.enabled:
        for name, unit_name in (("backup", layout.DUMP_UNIT), ("restore-drill", layout.DRILL_UNIT)):
            wanted += [(f"{name}.{kind}", unit.format(f"{unit_name}.{kind}"), 0o644, "root", "root",
                        DAEMON_RELOAD, False) for kind in ("service", "timer")]
    wanted += observability_files(cfg, platform)
    env = _environment()
    extra = []
    if cfg.cloudwatch_agent.enabled and platform.cloudwatch_agent_package:
        extra.append(ManagedFile(path=layout.CLOUDWATCH_AGENT_CONFIG, content=cloudwatch_agent.render(cfg),
                                 mode=0o644, owner="root", group="root",
                                 on_change=restart(cloudwatch_agent.SERVICE), template="cloudwatch-agent.json"))
    return extra + [
        ManagedFile(path=path, content=env.get_template(name).render(context), mode=mode, owner=owner,
                    group=group, on_change=on_change, template=name, secret=secret)
        for name, path, mode, owner, group, on_change, secret in wanted
    ] + health_modules()


def observability_files(cfg: Config, platform: Platform) -> list[tuple]:
    """The metrics timer, the patch timer and its tools' config, the journal export the
    CloudWatch agent reads (see steps/monitoring.py and steps/patches.py)."""
    unit = f"{layout.SYSTEMD_DIR}/{{}}"
    wanted = []
    if cfg.metrics.enabled:
        wanted += [(f"metrics.{kind}", unit.format(f"{layout.METRICS_UNIT}.{kind}"), 0o644, "root", "root",
                    DAEMON_RELOAD, False) for kind in ("service", "timer")]
    if cfg.cloudwatch_agent.enabled and platform.cloudwatch_agent_package:
        wanted += [(f"journal-export.{kind}", unit.format(f"{layout.JOURNAL_EXPORT_UNIT}.{kind}"), 0o644,
                    "root", "root", DAEMON_RELOAD, False) for kind in ("service", "timer")]
        wanted.append(("logrotate.conf", "/etc/logrotate.d/bingo-host", 0o644, "root", "root", None, False))
    if cfg.patches.enabled:
        wanted += [(f"patch.{kind}", unit.format(f"{layout.PATCH_UNIT}.{kind}"), 0o644, "root", "root",
                    DAEMON_RELOAD, False) for kind in ("service", "timer")]
        wanted += [(template, path, 0o644, "root", "root", None, False)
                   for template, path in platform.patch_config]
    return wanted


def health_modules() -> list[ManagedFile]:
    """bingo_health.py and its two modules, the WSGI wrapper the vassal loads around the app (see
    health_wsgi.py): copies of the modules' source, since the app's interpreter cannot import
    bingo-host."""
    return [ManagedFile(path=f"{layout.HEALTH_WSGI_DIR}/{name}.py",
                        content=Path(__file__).with_name(source).read_text(), mode=0o644, owner="root",
                        group="root", on_change=RELOAD_APP, template=source)
            for source, name in layout.HEALTH_SOURCES.items()]
