"""The bingo-host configuration: its sections, defaults and the check behind every field, each
field with what it means (docs/configuration.md is made from them: scripts/config-reference).

Every value that ends up inside an nginx, ini, SQL or systemd file is checked against a narrow
pattern (fields.py), so that no value can smuggle in a directive, a section, a statement or a
line. The sections for what runs beside the app are in config_ops.py; reading the file is
config_file.py; 'auto' is resolved by resolve.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any

from .config_ops import Backups, CloudwatchAgent, Deploy, Firewall, Metrics, Patches, Snapshots
from .errors import ConfigError
from .fields import (DB_SYSTEM_SCHEMAS, DB_SYSTEM_USERS, boolean, choice, integer, not_in,
                     not_system_user, optional, or_auto, pattern, required_with,
                     requirement_specifiers, setting, swap_size, swap_text)
from .name_fields import database_host, domain_name, email, server_names
from .path_fields import absolute_path, block_device, owned_dir
from .secret_fields import MASK, mail_password, password, secret_reference, secret_source, smtp_username
from .secrets import is_reference


def section(cls):
    return field(default_factory=cls, metadata={"section": cls})


URL_PATH = pattern(r"/(?!.*\.\.)[A-Za-z0-9._~/-]*",
                   "a URL path starting with '/' (letters, digits and ._~/- only, no '..')")


@dataclass(frozen=True)
class App:
    """The app: where it lives, who runs it, how many workers serve it."""
    name: str = setting("music-bingo", not_system_user(pattern(
        r"[a-z][a-z0-9-]{0,30}[a-z0-9]", "2 to 32 lower-case letters, digits and '-', starting "
                                         "with a letter")),
        "names the nginx site, the uWSGI vassal and (app.user auto) the app's user")
    root: str = setting("/var/www/music-bingo", owned_dir("/var/lib/mysql"),
                        "releases/<id>/, current -> releases/<id>, shared/bingo.ini")
    user: str = setting("auto", or_auto(not_system_user(pattern(
        r"[a-z_][a-z0-9_-]{0,31}", "a user name (lower-case letters, digits, '_' and '-')"))),
        "who the app runs as: auto is a dedicated system user named app.name (no login, no sudo); "
        "never root, a service's user or one who can become root")
    server_name: tuple[str, ...] = setting(("_",), server_names, "nginx's server_name: '_' (any "
                                           "name) or the site's names: bingo.example.com www.example.com")
    processes: int | str = setting("auto", or_auto(integer(1, 64)), "uWSGI workers; auto: two per "
                                   "CPU, at most one per 256 MiB of memory, at least 2 (2 on a t3a.nano)")
    health_path: str = setting("/api/health", URL_PATH,
                               "the deep check (the app and its database): what deploys and "
                               "`bingo-host status` request through nginx")
    live_path: str = setting("/api/health/live", URL_PATH,
                             "the shallow check: 200 when the app's worker answers, the database "
                             "untouched (an HA load balancer's health check)")
    keep_releases: int = setting(5, integer(1, 50), "releases kept for rollback")
    requirement_overrides: tuple[str, ...] = setting((), requirement_specifiers, "what the host "
        "changes in the app's pins (uv's --override: each replaces the app's own requirement on that "
        "package, wherever it comes from), e.g. mysql==0.0.3; part of the virtualenv's cache key")

    def __post_init__(self):
        if self.live_path == self.health_path:
            raise ConfigError("app.live_path", "must differ from app.health_path (one answers without "
                                               "the database, the other with it)")


IDENT = "letters, digits and _"


@dataclass(frozen=True)
class MusicBingo:
    """The [musicbingo] section of the app's bingo.ini."""
    mode: str = setting("BINGO", pattern(r"[A-Za-z][A-Za-z0-9_]{0,31}",
                                         f"1 to 32 {IDENT}, starting with a letter"),
                        "the app's game mode (its GameMode: BINGO, ...)")
    columns: int = setting(5, integer(1, 20), "columns of a bingo ticket")
    rows: int = setting(3, integer(1, 20), "rows of a bingo ticket")
    secret_key: str = setting("generate", secret_source, "the app's Flask SECRET_KEY (it signs "
                              "sessions and API tokens): generate (kept per host in "
                              "/etc/bingo-host/app-secret-key), or shared by every instance of an "
                              "HA group from SSM or Secrets Manager")


@dataclass(frozen=True)
class Database:
    """The app's database: MariaDB on the data volume (localhost), or an external server."""
    host: str = setting("localhost", database_host, "localhost: MariaDB on the data volume; else "
                        "an external server")
    port: int = setting(3306, integer(1, 65535), "the server's port")
    name: str = setting("bingo", not_in(DB_SYSTEM_SCHEMAS, "a MariaDB system schema", pattern(
        r"[A-Za-z0-9_]{1,64}", f"1 to 64 {IDENT}")), "the app's schema")
    user: str = setting("bingoapp", not_in(DB_SYSTEM_USERS, "a MariaDB account bingo-host does not "
                                                          "own", pattern(r"[A-Za-z0-9_]{1,32}",
                                                                         f"1 to 32 {IDENT}")),
                        "the app's login (only the app's schema's privileges)")
    password: str = setting("generate", password, "the app's password: generate, or read from SSM "
                            "or Secrets Manager (read again hourly: `bingo-host secrets refresh`); "
                            "a literal works, but then the secret sits in this file")
    admin_secret: str | None = setting(None, optional(secret_reference), "external server only: "
        "its master login (a JSON secret with username and password, as RDS keeps it); bootstrap "
        "creates database.user with it and changes that user's password when database.password's "
        "secret changes; the app never uses it")
    tls_ca: str | None = setting(None, optional(absolute_path), "external server only: the CA "
                                 "bundle its certificate must chain to (RDS: global-bundle.pem); the "
                                 "app and bingo-host then connect over TLS only")

    @property
    def local(self) -> bool:
        return self.host in ("localhost", "127.0.0.1", "::1")

    def __post_init__(self):
        for name in ("admin_secret", "tls_ca"):
            if getattr(self, name) is not None and self.local:
                raise ConfigError(f"database.{name}", "only for an external database (database.host "
                                                      "is this host: bootstrap manages it over its socket)")
        if self.admin_secret and self.password == "generate":
            raise ConfigError("database.password", "with database.admin_secret, give the app's password "
                                                   "as ssm:NAME or secretsmanager:ID: every host using the "
                                                   "database must read the same one")


@dataclass(frozen=True)
class Volume:
    """The EBS data volume (a local database only)."""
    device: str = setting("/dev/sdf", block_device, "as attached; on Nitro instances the NVMe "
                          "device is found from it")
    mountpoint: str = setting("/var/lib/mysql", owned_dir(), "where it is mounted")
    filesystem: str = setting("ext4", choice("ext4", "xfs"), "made only on a blank volume")
    label: str = setting("bingo-db", pattern(
        r"[A-Za-z0-9_-]{1,12}", "1 to 12 letters, digits, '_' or '-' (the longest label both "
                                "ext4 and xfs accept)"), "the filesystem's label")
    attach_as: str | None = setting(None, optional(pattern(
        r"/dev/(sd|xvd)[b-z]", "an EC2 device name /dev/sdX or /dev/xvdX")),
        "EC2 only: bootstrap attaches the volume itself, as this device name: the one tagged "
        "bingo-host:stack (the instance's own tag) and bingo-host:role=database in the "
        "instance's zone, once no other instance holds it; null: attached by someone else")


@dataclass(frozen=True)
class Swap:
    """A swap file."""
    size: int | str = setting("auto", swap_size, "auto: 1G up to 2 GiB of memory, else 2G; 0: none")


@dataclass(frozen=True)
class Https:
    """The site's certificate (`bingo-host enable-https`)."""
    domain: str | None = setting(None, optional(domain_name), "the site's name; set by "
                                 "`bingo-host enable-https --domain D`")
    email: str | None = setting(None, optional(email), "for the certificate's expiry and account "
                                "notices; with domain, bootstrap obtains the certificate (a "
                                "replacement instance reuses the one kept on the data volume)")
    server: str | None = setting(None, optional(pattern(
        r"staging|https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?",
        "'staging' or an https:// ACME directory URL")), "the ACME server bootstrap asks: null = "
        "Let's Encrypt; staging = its staging server (untrusted test certificates)")


@dataclass(frozen=True)
class Smtp:
    """The [smtp] section of bingo.ini: how the app sends mail (password resets). No server: no
    section, and the app's own default (localhost:25, which AL2023 does not serve)."""
    server: str | None = setting(None, optional(database_host), "e.g. "
                                 "email-smtp.eu-west-1.amazonaws.com (SES)")
    port: int = setting(587, integer(1, 65535), "the server's port")
    sender: str | None = setting(None, optional(email), "the From address; required with a server")
    username: str | None = setting(None, optional(smtp_username), "the SMTP login (SES: an access "
                                   "key id); with smtp.password")
    password: str | None = setting(None, optional(mail_password), "ssm:NAME or secretsmanager:ID (a "
                                   "JSON secret's password key); a literal works, but then the secret "
                                   "sits in this file")
    starttls: bool = setting(True, boolean, "STARTTLS before the login")

    def __post_init__(self):
        required_with(self.server, self.sender, "smtp.sender", "smtp.server is set",
                      "the From address of the app's mail")
        if bool(self.username) != bool(self.password):
            missing = "smtp.password" if self.username else "smtp.username"
            raise ConfigError(missing, "smtp.username and smtp.password go together")
        if self.username and not self.server:
            raise ConfigError("smtp.server", "required when smtp.username is set")


@dataclass(frozen=True)
class Config:
    """Every key is optional."""
    platform: str = setting("auto", choice("auto", "amzn2023", "debian12"),
                            "the OS: auto detects it (render and `config check` take --platform)")
    app: App = section(App)
    musicbingo: MusicBingo = section(MusicBingo)
    database: Database = section(Database)
    volume: Volume = section(Volume)
    swap: Swap = section(Swap)
    snapshots: Snapshots = section(Snapshots)
    backups: Backups = section(Backups)
    https: Https = section(Https)
    deploy: Deploy = section(Deploy)
    metrics: Metrics = section(Metrics)
    cloudwatch_agent: CloudwatchAgent = section(CloudwatchAgent)
    patches: Patches = section(Patches)
    firewall: Firewall = section(Firewall)
    smtp: Smtp = section(Smtp)


def to_dict(cfg: Config, mask_secrets: bool = True) -> dict:
    """Plain data for display (YAML/JSON), every value in the form the config file takes, so a
    printed config reads back as the same config; a literal password is masked."""
    data = asdict(cfg)
    data["app"]["server_name"] = " ".join(cfg.app.server_name)
    data["app"]["requirement_overrides"] = list(cfg.app.requirement_overrides)  # YAML has no tuples
    data["swap"]["size"] = swap_text(cfg.swap.size)
    if mask_secrets and not is_reference(cfg.database.password):
        data["database"]["password"] = MASK
    if mask_secrets and cfg.smtp.password and not is_reference(cfg.smtp.password):
        data["smtp"]["password"] = MASK
    return data


def with_values(cfg: Config, **sections: dict) -> Config:
    """A copy of cfg with some fields of some sections replaced (used to resolve 'auto')."""
    changes = {}
    for name, values in sections.items():
        current = getattr(cfg, name)
        changes[name] = replace(current, **values) if is_dataclass(current) else values
    return replace(cfg, **changes)
