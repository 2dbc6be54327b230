"""The bingo-host configuration: its sections, defaults and the check behind every field.

Every value that ends up inside an nginx, ini, SQL or systemd file is checked against a narrow
pattern (fields.py), so that no value can smuggle in a directive, a section, a statement or a
line. Reading the file is config_file.py; 'auto' is resolved by resolve.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any

from .errors import ConfigError
from .fields import (DB_SYSTEM_SCHEMAS, DB_SYSTEM_USERS, Check, boolean, choice, database_host,
                     domain_name, email, integer, kms_key_arn, not_in, not_system_user, optional,
                     or_auto, pattern, requirement_specifiers, s3_bucket, s3_prefix, schedule,
                     server_names, swap_size)
from .path_fields import absolute_path, block_device, owned_dir
from .secret_fields import mail_password, password, secret_reference, secret_source, smtp_username
from .secrets import is_reference


def _required_with(on: Any, value: Any, path: str, when: str, what: str) -> None:
    if on and not value:
        raise ConfigError(path, f"required when {when} ({what})")


def setting(default: Any, check: Check):
    return field(default=default, metadata={"check": check})


def section(cls):
    return field(default_factory=cls, metadata={"section": cls})


IDENT = "only letters, digits and _ are allowed"
fields_schedule = schedule


@dataclass(frozen=True)
class App:
    name: str = setting("music-bingo", not_system_user(pattern(
        r"[a-z][a-z0-9-]{0,30}[a-z0-9]", "lower-case letters, digits and '-', 2 to 32 characters, "
                                         "starting with a letter")))
    root: str = setting("/var/www/music-bingo", owned_dir("/var/lib/mysql"))
    user: str = setting("auto", or_auto(not_system_user(pattern(
        r"[a-z_][a-z0-9_-]{0,31}", "must be a user name (lower-case letters, digits, '_' and '-')"))))
    server_name: tuple[str, ...] = setting(("_",), server_names)
    processes: int | str = setting("auto", or_auto(integer(1, 64)))
    health_path: str = setting("/api/health", pattern(
        r"/(?!.*\.\.)[A-Za-z0-9._~/-]*", "must be a URL path starting with '/' "
                                         "(letters, digits and ._~/- only, no '..')"))
    keep_releases: int = setting(5, integer(1, 50))
    # What the host changes in the app's pins (uv's --override: they replace the app's own
    # requirement on that package, wherever it comes from), e.g. ["mysql==0.0.3"]; part of the
    # virtualenv's cache key.
    requirement_overrides: tuple[str, ...] = setting((), requirement_specifiers)


@dataclass(frozen=True)
class MusicBingo:
    mode: str = setting("BINGO", pattern(r"[A-Za-z][A-Za-z0-9_]{0,31}", IDENT))
    columns: int = setting(5, integer(1, 20))
    rows: int = setting(3, integer(1, 20))
    # The app's Flask SECRET_KEY (it signs sessions and API tokens): generated once per host, or
    # shared by every instance of an HA group from SSM / Secrets Manager.
    secret_key: str = setting("generate", secret_source)


@dataclass(frozen=True)
class Database:
    host: str = setting("localhost", database_host)
    port: int = setting(3306, integer(1, 65535))
    name: str = setting("bingo", not_in(DB_SYSTEM_SCHEMAS, "a MariaDB system schema", pattern(
        r"[A-Za-z0-9_]{1,64}", IDENT)))
    user: str = setting("bingoapp", not_in(DB_SYSTEM_USERS, "a MariaDB account bingo-host does not "
                                                          "own", pattern(r"[A-Za-z0-9_]{1,32}", IDENT)))
    password: str = setting("generate", password)
    # External database only. The server's master login (a JSON secret with "username" and
    # "password", as RDS keeps it): bootstrap creates the app's own user with it, and changes
    # that user's password when database.password's secret changes. The app never uses it.
    admin_secret: str | None = setting(None, optional(secret_reference))
    # External database only: the CA bundle the server's certificate must chain to (RDS:
    # global-bundle.pem); the app and bingo-host then connect over TLS only.
    tls_ca: str | None = setting(None, optional(absolute_path))

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
    device: str = setting("/dev/sdf", block_device)
    mountpoint: str = setting("/var/lib/mysql", owned_dir())
    filesystem: str = setting("ext4", choice("ext4", "xfs"))
    label: str = setting("bingo-db", pattern(
        r"[A-Za-z0-9_-]{1,12}", "1 to 12 letters, digits, '_' or '-' (the longest label both "
                                "ext4 and xfs accept)"))


@dataclass(frozen=True)
class Swap:
    size: int | str = setting("auto", swap_size)


@dataclass(frozen=True)
class Snapshots:
    enabled: bool = setting(True, boolean)
    schedule: str = setting("daily", schedule)
    keep: int = setting(7, integer(1, 1000))
    # data: the volume at volume.device only (bootstrap rebuilds the root volume); all: every
    # volume attached to the instance.
    volumes: str = setting("data", choice("data", "all"))
    # The bingo-host:stack tag every snapshot gets, the only ones retention deletes (the stack's
    # IAM policy allows DeleteSnapshot on exactly these): auto = the instance's
    # aws:cloudformation:stack-name tag, else its instance id.
    stack: str = setting("auto", or_auto(pattern(
        r"[A-Za-z][A-Za-z0-9-]{0,127}", "a CloudFormation stack name: a letter, then letters, "
                                        "digits and '-', at most 128 characters")))


@dataclass(frozen=True)
class Backups:
    # Logical dumps (`bingo-host backup`) to S3, beside the EBS snapshots, and monthly restore drills.
    enabled: bool = setting(False, boolean)
    bucket: str | None = setting(None, optional(s3_bucket))
    prefix: str = setting("bingo-host/", s3_prefix)
    schedule: str = setting("daily", schedule)
    keep: int = setting(14, integer(1, 1000))
    drill_schedule: str = setting("monthly", fields_schedule)  # (`schedule` is the field above here)

    def __post_init__(self):
        _required_with(self.enabled, self.bucket, "backups.bucket", "backups.enabled is true",
                       "the S3 bucket the dumps go to")


@dataclass(frozen=True)
class Https:
    domain: str | None = setting(None, optional(domain_name))
    email: str | None = setting(None, optional(email))


@dataclass(frozen=True)
class Deploy:
    # Refuse revisions whose manifest is not signed by signing_key (`bingo-host bundle --sign-key`).
    require_signature: bool = setting(False, boolean)
    signing_key: str | None = setting(None, optional(kms_key_arn))

    def __post_init__(self):
        _required_with(self.require_signature, self.signing_key, "deploy.signing_key",
                       "deploy.require_signature is true", "the KMS key ARN revisions are signed with")


@dataclass(frozen=True)
class Metrics:
    # bingo-host's own timer puts memory, swap and disk use and nginx's 5xx count into CloudWatch
    # (namespace BingoHost): what the alarms watch, for one short process every interval.
    enabled: bool = setting(False, boolean)
    interval_minutes: int = setting(5, integer(1, 60))


@dataclass(frozen=True)
class CloudwatchAgent:
    # The CloudWatch agent ships the logs (and its own metrics); it costs ~40-60 MiB resident,
    # a tenth of a nano: 'auto' runs it from 1 GiB of memory, where the platform packages it.
    enabled: bool | str = setting("auto", or_auto(boolean))


@dataclass(frozen=True)
class Patches:
    # Security updates on a timer, never during a deployment, under a memory bound.
    enabled: bool = setting(True, boolean)
    schedule: str = setting("*-*-* 04:30:00", schedule)
    # Amazon Linux 2023's repositories are versioned: updates come from this release version
    # ('latest', or a tested one such as 2023.9.20251117: the fleet moves only when you change it).
    release: str = setting("latest", pattern(
        r"latest|20\d\d\.\d{1,3}\.\d{8}", "must be 'latest' or an Amazon Linux release version "
                                         "such as 2023.9.20251117"))


@dataclass(frozen=True)
class Firewall:
    # An nftables table of bingo-host's own rejects what the app's user sends to the instance
    # metadata service (the instance role's credentials). Off only where the host does not own its
    # network namespace (a container sharing its machine's network): the rule would be the machine's.
    enabled: bool = setting(True, boolean)


@dataclass(frozen=True)
class Smtp:
    """The [smtp] section of bingo.ini: how the app sends mail (password resets). No server: no
    section, and the app's own default (localhost:25, which AL2023 does not serve)."""
    server: str | None = setting(None, optional(database_host))
    port: int = setting(587, integer(1, 65535))
    sender: str | None = setting(None, optional(email))
    username: str | None = setting(None, optional(smtp_username))
    password: str | None = setting(None, optional(mail_password))
    starttls: bool = setting(True, boolean)

    def __post_init__(self):
        _required_with(self.server, self.sender, "smtp.sender", "smtp.server is set",
                       "the From address of the app's mail")
        if bool(self.username) != bool(self.password):
            missing = "smtp.password" if self.username else "smtp.username"
            raise ConfigError(missing, "smtp.username and smtp.password go together")
        if self.username and not self.server:
            raise ConfigError("smtp.server", "required when smtp.username is set")


@dataclass(frozen=True)
class Config:
    platform: str = setting("auto", choice("auto", "amzn2023", "debian12"))
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
    """Plain data for display (YAML/JSON); a literal password is masked."""
    data = asdict(cfg)
    data["app"]["server_name"] = " ".join(cfg.app.server_name)
    data["app"]["requirement_overrides"] = list(cfg.app.requirement_overrides)  # YAML has no tuples
    if mask_secrets and not is_reference(cfg.database.password):
        data["database"]["password"] = "*****"
    if mask_secrets and cfg.smtp.password and not is_reference(cfg.smtp.password):
        data["smtp"]["password"] = "*****"
    return data


def with_values(cfg: Config, **sections: dict) -> Config:
    """A copy of cfg with some fields of some sections replaced (used to resolve 'auto')."""
    changes = {}
    for name, values in sections.items():
        current = getattr(cfg, name)
        changes[name] = replace(current, **values) if is_dataclass(current) else values
    return replace(cfg, **changes)
