"""The bingo-host configuration file: strict schema, defaults, and validation.

Every value that ends up inside an nginx, ini, SQL or systemd file is checked against a narrow
pattern (fields.py), so that no value can smuggle in a directive, a section, a statement or a
line. Errors name the field by its dotted path (``database.name``) and the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .fields import (Check, absolute_path, boolean, choice, database_host, domain_name, email,
                     integer, kms_key_arn, optional, or_auto, password, pattern, schedule,
                     secret_source, server_names, swap_size, type_name)


# -- schema --

def setting(default: Any, check: Check):
    return field(default=default, metadata={"check": check})


def section(cls):
    return field(default_factory=cls, metadata={"section": cls})


IDENT = "only letters, digits and _ are allowed"


@dataclass(frozen=True)
class App:
    name: str = setting("music-bingo", pattern(
        r"[a-z][a-z0-9-]{0,30}[a-z0-9]", "lower-case letters, digits and '-', 2 to 32 characters, "
                                         "starting with a letter"))
    root: str = setting("/var/www/music-bingo", absolute_path)
    user: str = setting("auto", or_auto(pattern(
        r"[a-z_][a-z0-9_-]{0,31}", "must be a user name (lower-case letters, digits, '_' and '-')")))
    server_name: tuple[str, ...] = setting(("_",), server_names)
    processes: int | str = setting("auto", or_auto(integer(1, 64)))
    health_path: str = setting("/api/health", pattern(
        r"/(?!.*\.\.)[A-Za-z0-9._~/-]*", "must be a URL path starting with '/' "
                                         "(letters, digits and ._~/- only, no '..')"))
    keep_releases: int = setting(5, integer(1, 50))


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
    name: str = setting("bingo", pattern(r"[A-Za-z0-9_]{1,64}", IDENT))
    user: str = setting("bingoapp", pattern(r"[A-Za-z0-9_]{1,32}", IDENT))
    password: str = setting("generate", password)

    @property
    def local(self) -> bool:
        return self.host in ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Volume:
    device: str = setting("/dev/sdf", pattern(
        r"/dev/(?!.*\.\.)[A-Za-z0-9/_.:-]+", "must be a device path under /dev"))
    mountpoint: str = setting("/var/lib/mysql", absolute_path)
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
        if self.require_signature and not self.signing_key:
            raise ConfigError("deploy.signing_key", "required when deploy.require_signature is true "
                                                    "(the KMS key ARN revisions are signed with)")


@dataclass(frozen=True)
class Config:
    platform: str = setting("auto", choice("auto", "amzn2023", "debian12"))
    app: App = section(App)
    musicbingo: MusicBingo = section(MusicBingo)
    database: Database = section(Database)
    volume: Volume = section(Volume)
    swap: Swap = section(Swap)
    snapshots: Snapshots = section(Snapshots)
    https: Https = section(Https)
    deploy: Deploy = section(Deploy)


def _build(cls, data: Any, path: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path or "(top level)", f"expected a mapping, got {type_name(data)}")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key (expected one of: {', '.join(known)})")
    values = {}
    for name, f in known.items():
        if name not in data:
            continue
        where = f"{path}.{name}" if path else name
        if "section" in f.metadata:
            values[name] = _build(f.metadata["section"], data[name], where)
        else:
            values[name] = f.metadata["check"](data[name], where)
    return cls(**values)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config_text(text: str, source: str = "<string>") -> Config:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, f"not valid YAML{where}: {problem}") from exc
    return _build(Config, data, "")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
    return load_config_text(text, str(path))


def is_reference(secret: str) -> bool:
    """True for password values that name where the secret lives rather than being it."""
    return secret == "generate" or secret.startswith(("ssm:", "secretsmanager:"))


def to_dict(cfg: Config, mask_secrets: bool = True) -> dict:
    """Plain data for display (YAML/JSON); a literal password is masked."""
    data = asdict(cfg)
    data["app"]["server_name"] = " ".join(cfg.app.server_name)
    if mask_secrets and not is_reference(cfg.database.password):
        data["database"]["password"] = "*****"
    return data


def with_values(cfg: Config, **sections: dict) -> Config:
    """A copy of cfg with some fields of some sections replaced (used to resolve 'auto')."""
    changes = {}
    for name, values in sections.items():
        current = getattr(cfg, name)
        changes[name] = replace(current, **values) if is_dataclass(current) else values
    return replace(cfg, **changes)
