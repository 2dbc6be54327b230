"""The checks behind each config field: each takes (value, dotted path) and returns the
normalised value or raises ConfigError naming the field and the reason. Here: the building
blocks, accounts, names on the network, schedules, sizes, AWS names; paths in path_fields.py,
secrets' sources in secret_fields.py. None runs a program (systemd's own calendar check is
facts.systemd.systemd_calendar)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from .errors import ConfigError
from .facts.platforms import PLATFORMS
from .layout import BACKUP_DB_USER, DUMP_DB_USER, RESTORE_DB_USER

Check = Callable[[Any, str], Any]


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
            dict: "a mapping", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def clip(text: str) -> str:
    """At most 60 characters of text for an error message (a hostile file's value can be
    megabytes long)."""
    return text if len(text) <= 60 else text[:60] + "..."


def shown(value: Any) -> str:
    """A value as an error message quotes it (clipped); a key as it names a field (unquoted)."""
    try:
        return clip(repr(value))
    except ValueError:  # an integer beyond Python's str() digit limit
        return "a very long number"


def choice(*options: str) -> Check:
    def check(value, path):
        if value not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)} (got {shown(value)})")
        return value
    return check


def integer(lo: int, hi: int) -> Check:
    def check(value, path):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {type_name(value)}")
        if not lo <= value <= hi:
            raise ConfigError(path, f"must be between {lo} and {hi} (got {shown(value)})")
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


# Accounts the app must never run as, nor create under its name: root, the platforms' nginx and
# MariaDB users (the app would own their files), and the usual system accounts.
SYSTEM_USERS = frozenset(
    {"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
     "backup", "list", "irc", "gnats", "nobody", "adm", "operator", "halt", "shutdown", "ftp",
     "sshd", "messagebus", "dbus", "polkitd", "chrony", "_chrony", "_apt", "tss", "rpc", "rpcuser",
     "postfix", "ssm-user", "ec2-instance-connect", "cwagent"}
    | {name for p in PLATFORMS.values() for name in (p.mariadb_user, p.nginx_user, p.nginx_group)})


def not_system_user(inner: Check) -> Check:
    def check(value, path):
        value = inner(value, path)
        if value in SYSTEM_USERS or value.startswith("systemd-"):
            raise ConfigError(path, f"{value!r} is a system account: the app needs a user of its own")
        return value
    return check


# MariaDB's own accounts and schemas: granting the app ALL on `mysql` would let it write grants.
DB_SYSTEM_USERS = frozenset({"root", "mysql", "public", BACKUP_DB_USER, DUMP_DB_USER, RESTORE_DB_USER})
DB_SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


def not_in(reserved: frozenset[str], what: str, inner: Check) -> Check:
    def check(value, path):
        value = inner(value, path)
        if value.lower() in reserved:
            raise ConfigError(path, f"{value!r} is {what}")
        return value
    return check


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _is_ip(value: str) -> bool:
    """An IPv4 dotted quad or an IPv6 address without a scope id ('%eth0': anything may follow
    the '%', a ';' and an nginx directive too)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return getattr(address, "scope_id", None) is None


def _is_hostname(value: str) -> bool:
    """RFC 1123 letters, digits and '-' labels; an all-digit last label would be a mistyped
    address such as 10.0.0 or 300.1.1.1, not a name (RFC 3696 section 2)."""
    return bool(HOSTNAME.fullmatch(value)) and not value.rsplit(".", 1)[-1].isdigit()


def domain_name(value, path) -> str:
    """A DNS name that can carry a certificate: not an IP address, not '_'."""
    value = string(value, path).lower().rstrip(".")
    if _is_ip(value):
        raise ConfigError(path, "must be a host name, not an IP address")
    if not _is_hostname(value) or "." not in value:
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
        if item != "_" and not (_is_hostname(bare) or _is_ip(item)):
            raise ConfigError(path, f"{shown(item)} is not '_' or a host name")
        names.append(item.lower())
    if "_" in names and len(names) > 1:
        raise ConfigError(path, "'_' must stand alone")
    return tuple(names)


def database_host(value, path) -> str:
    value = string(value, path)
    if not (_is_hostname(value) or _is_ip(value)):
        raise ConfigError(path, "must be a host name or an IP address (no IPv6 scope id)")
    return value


SIZE = re.compile(r"(\d+)\s*([MG])i?B?", re.IGNORECASE)


def swap_size(value, path) -> int | str:
    """auto, 0 (no swap), or a size such as 512M or 2G; returned in MiB."""
    if value == "auto":
        return value
    if isinstance(value, (bool, float)):  # false == 0 and 0.0 == 0 would pass as "no swap"
        raise ConfigError(path, f"expected auto, 0 or a size, got {type_name(value)}")
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
    if value in SCHEDULE_PRESETS or re.fullmatch(r"(?!-)[A-Za-z0-9 :*,/.~-]{1,64}", value):
        return value
    raise ConfigError(path, f"must be one of {', '.join(SCHEDULE_PRESETS)} or an OnCalendar= "
                            "expression such as '*-*-* 03:00:00'")


_LOCAL_PART = re.compile(r"(?![.-])(?!.*\.\.)[A-Za-z0-9._+-]{1,64}(?<!\.)")


def email(value, path) -> str:
    """It reaches certbot's command line: no leading '-' (an option), letters, digits and ._+-
    before the @, a fully qualified host name after it."""
    value = string(value, path)
    local, _, domain = value.partition("@")
    if not _LOCAL_PART.fullmatch(local) or not _is_hostname(domain) or "." not in domain:
        raise ConfigError(path, "must be an e-mail address such as admin@example.com (letters, "
                                "digits and ._+- before the @, not starting with '-' or '.')")
    return value


# A requirement specifier as uv's --override takes it, narrowed: a package name, optional
# [extras], optional version clauses; no options, URLs or markers. Written one a line to a file
# the build reads, so no value can add an option or a second requirement.
_PKG = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"
_CLAUSE = r"(?:===?|~=|!=|<=?|>=?)\s*[A-Za-z0-9.*+!_-]{1,64}"
REQUIREMENT = re.compile(rf"({_PKG})(?:\[{_PKG}(?:,{_PKG})*\])?(?:\s*{_CLAUSE}(?:\s*,\s*{_CLAUSE})*)?")
MAX_REQUIREMENTS = 32


def requirement_specifiers(value, path) -> tuple[str, ...]:
    """A list of requirement specifiers such as mysql==0.0.3 (app.requirement_overrides), each
    package at most once (by its normalised name)."""
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of requirement specifiers, got {type_name(value)}")
    if len(value) > MAX_REQUIREMENTS:
        raise ConfigError(path, f"at most {MAX_REQUIREMENTS} requirement specifiers")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        match = REQUIREMENT.fullmatch(string(item, where).strip())
        if not match:
            raise ConfigError(where, f"{shown(item)} is not a requirement specifier such as "
                                     "mysql==0.0.3 (a package name, optional [extras] and version "
                                     "clauses; no options, URLs or markers)")
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        if name in seen:
            raise ConfigError(where, f"{name} is already overridden by {path}[{seen[name]}]")
        seen[name] = i
    return tuple(item.strip() for item in value)


# A KMS key or alias ARN: its region and account are part of what the host trusts.
kms_key_arn = pattern(
    r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250})",
    "must be a KMS key or alias ARN such as "
    "arn:aws:kms:eu-west-1:123456789012:alias/bingo-bundle-signing")


# A CodeDeploy deployment (or deployment group) id: it names a release directory.
deployment_id = pattern(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", "letters, digits, '_' and '-' only")

snapshot_id = pattern(r"snap-(?:[0-9a-f]{8}|[0-9a-f]{17})",
                      "an EBS snapshot id such as snap-0123456789abcdef0")


# S3 bucket names as AWS allows them today (no dots: virtual-hosted TLS breaks on them, and no
# name that looks like an IP address or carries a reserved prefix or suffix).
s3_bucket = pattern(
    r"(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9][a-z0-9-]{1,61}[a-z0-9](?<!-s3alias)(?<!--ol-s3)(?<!--x-s3)",
    "must be an S3 bucket name: 3 to 63 lower-case letters, digits and '-', starting and ending "
    "with a letter or digit (no dots)")


def s3_prefix(value, path) -> str:
    """The key prefix the dumps live under (the instance role may write only there): empty, or
    segments of letters, digits and ._- each ending in '/'."""
    value = string(value, path)
    if value and not re.fullmatch(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,62}/){1,8}", value):
        raise ConfigError(path, "must be empty or path segments (letters, digits and ._-, not starting "
                                "with '.' or '-') each ending in '/', such as 'bingo-host/' or "
                                "'prod/bingo/'")
    return value
