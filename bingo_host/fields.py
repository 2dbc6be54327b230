"""The checks behind each config field: each takes (value, dotted path) and returns the
normalised value or raises ConfigError naming the field and the reason."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from .errors import ConfigError

Check = Callable[[Any, str], Any]


def type_name(value: Any) -> str:
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
            raise ConfigError(path, f"expected an integer, got {type_name(value)}")
        if not lo <= value <= hi:
            raise ConfigError(path, f"must be between {lo} and {hi} (got {value})")
        return value
    return check


def boolean(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {type_name(value)}")
    return value


def string(value, path) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {type_name(value)}")
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


def secret_source(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID: never the secret itself."""
    value = string(value, path)
    if value != "generate" and not value.startswith(("ssm:", "secretsmanager:")):
        raise ConfigError(path, "must be 'generate', 'ssm:NAME' or 'secretsmanager:ID' (the value "
                                "itself never goes into the config file)")
    return password(value, path)


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


KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:"
                         r"(key/[A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250})")


def kms_key_arn(value, path) -> str:
    """A KMS key or alias ARN: its region and account are part of what the host trusts."""
    value = string(value, path)
    if not KMS_KEY_ARN.fullmatch(value):
        raise ConfigError(path, "must be a KMS key or alias ARN such as "
                                "arn:aws:kms:eu-west-1:123456789012:alias/bingo-bundle-signing")
    return value
