"""The bingo-host configuration file: strict schema, defaults, and validation.

Every value that ends up inside an nginx, ini, SQL or systemd file is checked against a narrow
pattern here, so that no value can smuggle in a directive, a section, a statement or a line.
Errors name the field by its dotted path (``database.name``) and the reason.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ConfigError

DEFAULT_PATH = "/etc/bingo-host/config.yaml"

Check = Callable[[Any, str], Any]


# -- checks: each takes (value, path) and returns the normalised value or raises ConfigError --

def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
            dict: "a mapping", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def choice(*options: str) -> Check:
    def check(value, path):
        if value not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)} (got {value!r})")
        return value
    return check


def integer(lo: int, hi: int) -> Check:
    def check(value, path):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {_type_name(value)}")
        if not lo <= value <= hi:
            raise ConfigError(path, f"must be between {lo} and {hi} (got {value})")
        return value
    return check


def boolean(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_type_name(value)}")
    return value


def string(value, path) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {_type_name(value)}")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(path, "must be a single line")
    return value


def pattern(regex: str, reason: str) -> Check:
    compiled = re.compile(regex)

    def check(value, path):
        value = string(value, path)
        if not compiled.fullmatch(value):
            raise ConfigError(path, reason)
        return value
    return check


def or_auto(inner: Check) -> Check:
    def check(value, path):
        return "auto" if value == "auto" else inner(value, path)
    return check


def optional(inner: Check) -> Check:
    def check(value, path):
        return None if value is None else inner(value, path)
    return check


_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def absolute_path(value, path) -> str:
    value = string(value, path)
    if not value.startswith("/"):
        raise ConfigError(path, "must be an absolute path")
    segments = value.strip("/").split("/")
    if value == "/" or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ConfigError(
            path, "only letters, digits, '.', '_' and '-' are allowed in path segments "
                  "(no '..', no empty segments, no spaces or quotes)")
    if any(s in (".", "..") for s in segments):
        raise ConfigError(path, "'.' and '..' are not allowed in paths")
    return "/" + "/".join(segments)


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def domain_name(value, path) -> str:
    """A DNS name that can carry a certificate: not an IP address, not '_'."""
    value = string(value, path).lower().rstrip(".")
    if _is_ip(value):
        raise ConfigError(path, "must be a host name, not an IP address")
    if not HOSTNAME.fullmatch(value) or "." not in value:
        raise ConfigError(path, "must be a fully qualified host name (letters, digits, '-' and dots)")
    return value


def server_names(value, path) -> tuple[str, ...]:
    """nginx server_name: '_' or host names, as a list or a space-separated string."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(path, "expected '_' or one or more host names")
    names = []
    for i, item in enumerate(items):
        item = string(item, f"{path}[{i}]") if not isinstance(value, str) else item
        bare = item[2:] if item.startswith("*.") else item
        if item != "_" and not (HOSTNAME.fullmatch(bare) or _is_ip(item)):
            raise ConfigError(path, f"{item!r} is not '_' or a host name")
        names.append(item.lower())
    if "_" in names and len(names) > 1:
        raise ConfigError(path, "'_' must stand alone")
    return tuple(names)


def database_host(value, path) -> str:
    value = string(value, path)
    if not (HOSTNAME.fullmatch(value) or _is_ip(value)):
        raise ConfigError(path, "must be a host name or an IP address")
    return value


PASSWORD_CHARS = re.compile(r"[A-Za-z0-9!#$&()*+,./:<=>?@\[\]^_{|}~-]{12,128}")


def password(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID | a literal (discouraged)."""
    value = string(value, path)
    if value == "generate":
        return value
    if value.startswith("ssm:"):
        if not re.fullmatch(r"ssm:(arn:[A-Za-z0-9:/_.-]+|/?[A-Za-z0-9_.\-/]{1,2048})", value):
            raise ConfigError(path, "ssm: must be followed by a parameter name or ARN")
        return value
    if value.startswith("secretsmanager:"):
        if not re.fullmatch(r"secretsmanager:[A-Za-z0-9/_+=.@:!-]{1,2048}", value):
            raise ConfigError(path, "secretsmanager: must be followed by a secret name or ARN")
        return value
    if not PASSWORD_CHARS.fullmatch(value):
        raise ConfigError(
            path, "a literal password needs 12 to 128 characters from letters, digits and "
                  "!#$&()*+,./:<=>?@[]^_{|}~- (no quotes, backslash, ';', '%' or spaces); "
                  "prefer 'generate', 'ssm:NAME' or 'secretsmanager:ID'")
    return value


SIZE = re.compile(r"(\d+)\s*([MG])i?B?", re.IGNORECASE)


def swap_size(value, path) -> int | str:
    """auto, 0 (no swap), or a size such as 512M or 2G; returned in MiB."""
    if value == "auto":
        return value
    if value == 0 or value in ("off", "none"):
        return 0
    if isinstance(value, str) and (m := SIZE.fullmatch(value.strip())):
        mib = int(m.group(1)) * (1024 if m.group(2).upper() == "G" else 1)
        if 16 <= mib <= 32 * 1024:
            return mib
    raise ConfigError(path, "must be auto, 0, or a size between 16M and 32G such as 512M or 2G")


SCHEDULE_PRESETS = ("hourly", "daily", "weekly", "monthly")


def schedule(value, path) -> str:
    """A systemd OnCalendar= expression; its characters are limited so it stays one value."""
    value = string(value, path).strip()
    if value in SCHEDULE_PRESETS or re.fullmatch(r"[A-Za-z0-9 :*,/.~-]{1,64}", value):
        return value
    raise ConfigError(path, f"must be one of {', '.join(SCHEDULE_PRESETS)} or an OnCalendar= "
                            "expression such as '*-*-* 03:00:00'")


def email(value, path) -> str:
    value = string(value, path)
    local, _, domain = value.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9._%+-]{1,64}", local) or not HOSTNAME.fullmatch(domain) \
            or "." not in domain:
        raise ConfigError(path, "must be an e-mail address such as admin@example.com")
    return value


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
class Config:
    platform: str = setting("auto", choice("auto", "amzn2023", "debian12"))
    app: App = section(App)
    musicbingo: MusicBingo = section(MusicBingo)
    database: Database = section(Database)
    volume: Volume = section(Volume)
    swap: Swap = section(Swap)
    snapshots: Snapshots = section(Snapshots)
    https: Https = section(Https)


def _build(cls, data: Any, path: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path or "(top level)", f"expected a mapping, got {_type_name(data)}")
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
