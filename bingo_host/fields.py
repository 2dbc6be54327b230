"""The checks behind each config field: each takes (value, dotted path) and returns the
normalised value or raises ConfigError naming the field, the reason and the value (NotAllowed:
what the field allows). Here: the building blocks, accounts, schedules, sizes, AWS names; names
on the network in name_fields.py, paths in path_fields.py, secrets' sources in secret_fields.py.
None runs a program (systemd's own calendar check is facts.systemd.systemd_calendar)."""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any, Callable

from .errors import ConfigError
from .facts.platforms import PLATFORMS
from .layout import BACKUP_DB_USER, DUMP_DB_USER, RESTORE_DB_USER

Check = Callable[[Any, str], Any]


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
            dict: "a mapping", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def clip(text: str) -> str:
    """At most 40 characters of text for an error message (a hostile file's value can be
    megabytes long)."""
    return text if len(text) <= 40 else text[:40] + "..."


def shown(value: Any) -> str:
    """A value as an error message quotes it, clipped; null and booleans in YAML's words, a list
    or mapping by its kind."""
    if isinstance(value, (list, dict)):
        return type_name(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    try:
        return clip(repr(value))
    except ValueError:  # an integer beyond Python's str() digit limit
        return "a very long number"


class NotAllowed(ConfigError):
    """A value its field does not allow: the error says what is allowed and quotes the value
    (got: how to show it instead, for a secret). Every check carries that text as its `allowed`
    attribute: or_auto's and optional's words, and the configuration reference's column
    (scripts/config-reference)."""

    def __init__(self, path: str, allowed: str, value: Any, got: str | None = None):
        self.allowed, self.value = allowed, value
        super().__init__(path, f"must be {allowed} (got {got or shown(value)})")


def setting(default: Any, check: Check, doc: str):
    """A config field: its default, its check and what it means (docs/configuration.md)."""
    return field(default=default, metadata={"check": check, "doc": doc})


def required_with(on: Any, value: Any, path: str, when: str, what: str) -> None:
    if on and not value:
        raise ConfigError(path, f"required when {when} ({what})")


def choice(*options: str) -> Check:
    allowed = "one of " + ", ".join(options)

    def check(value, path):
        if value not in options:
            raise NotAllowed(path, allowed, value)
        return value
    check.allowed = allowed
    return check


def integer(lo: int, hi: int) -> Check:
    allowed = f"an integer between {lo} and {hi}"

    def check(value, path):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise NotAllowed(path, allowed, value)
        return value
    check.allowed = allowed
    return check


def boolean(value, path):
    if not isinstance(value, bool):
        raise NotAllowed(path, boolean.allowed, value)
    return value


boolean.allowed = "true or false"


def string(value, path, allowed: str = "a string") -> str:
    if not isinstance(value, str):
        raise NotAllowed(path, allowed, value)
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(path, f"must be a single line (got {shown(value)})")
    return value


string.allowed = "a string"


def pattern(regex: str, allowed: str) -> Check:
    compiled = re.compile(regex)

    def check(value, path):
        if not compiled.fullmatch(string(value, path, allowed)):
            raise NotAllowed(path, allowed, value)
        return value
    check.allowed = allowed
    return check


def or_auto(inner: Check) -> Check:
    allowed = f"'auto' or {inner.allowed}"

    def check(value, path):
        if value == "auto":
            return value
        try:
            return inner(value, path)
        except NotAllowed as exc:
            if exc.field != path:
                raise
        raise NotAllowed(path, allowed, value)
    check.allowed = allowed
    return check


def optional(inner: Check) -> Check:
    def check(value, path):
        return None if value is None else inner(value, path)
    check.allowed = f"{inner.allowed}, or null"
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
    check.allowed = f"{inner.allowed}, not a system account"
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
    check.allowed = f"{inner.allowed}, not {' or '.join(sorted(reserved))}"
    return check


SIZE = re.compile(r"(\d+)\s*([MG])i?B?", re.IGNORECASE)


def swap_size(value, path) -> int | str:
    """auto, 0 (no swap), or a size such as 512M or 2G; returned in MiB (swap_text writes it back)."""
    if value == "auto":
        return value
    if value == 0 and not isinstance(value, (bool, float)) or value in ("off", "none"):
        return 0  # false == 0 and 0.0 == 0 would pass as "no swap"
    if isinstance(value, str) and (m := SIZE.fullmatch(value.strip())):
        mib = int(m.group(1)) * (1024 if m.group(2).upper() == "G" else 1)
        if 16 <= mib <= 32 * 1024:
            return mib
    raise NotAllowed(path, swap_size.allowed, value)


swap_size.allowed = "'auto', 0, or a size between 16M and 32G such as 512M or 2G"


def swap_text(mib: int | str) -> int | str:
    """swap.size as the config file writes it (what `config check` prints): 2G, 512M, 0, auto."""
    if isinstance(mib, str) or mib == 0:
        return mib
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


SCHEDULE_PRESETS = ("hourly", "daily", "weekly", "monthly")


def schedule(value, path) -> str:
    """A systemd OnCalendar= expression; its characters are limited so it stays one value."""
    value = string(value, path, schedule.allowed).strip()
    if value in SCHEDULE_PRESETS or re.fullmatch(r"(?!-)[A-Za-z0-9 :*,/.~-]{1,64}", value):
        return value
    raise NotAllowed(path, schedule.allowed, value)


schedule.allowed = (f"one of {', '.join(SCHEDULE_PRESETS)} or an OnCalendar= expression "
                    "such as '*-*-* 03:00:00'")


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
    if not isinstance(value, list) or len(value) > MAX_REQUIREMENTS:
        got = f"{len(value)} of them" if isinstance(value, list) else None
        raise NotAllowed(path, requirement_specifiers.allowed, value, got)
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


requirement_specifiers.allowed = (f"a list of at most {MAX_REQUIREMENTS} requirement specifiers "
                                  "such as mysql==0.0.3, each package once")


# A KMS key or alias ARN: its region and account are part of what the host trusts.
kms_key_arn = pattern(
    r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250})",
    "a KMS key or alias ARN such as arn:aws:kms:eu-west-1:123456789012:alias/bingo-bundle-signing")


# A CodeDeploy deployment (or deployment group) id: it names a release directory.
deployment_id = pattern(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
                        "1 to 64 letters, digits, '_' and '-', starting with a letter or digit")

snapshot_id = pattern(r"snap-(?:[0-9a-f]{8}|[0-9a-f]{17})",
                      "an EBS snapshot id such as snap-0123456789abcdef0")


# S3 bucket names as AWS allows them today (no dots: virtual-hosted TLS breaks on them, and no
# name that looks like an IP address or carries a reserved prefix or suffix).
s3_bucket = pattern(
    r"(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9][a-z0-9-]{1,61}[a-z0-9](?<!-s3alias)(?<!--ol-s3)(?<!--x-s3)",
    "an S3 bucket name: 3 to 63 lower-case letters, digits and '-', starting and ending with a "
    "letter or digit (no dots)")


def s3_prefix(value, path) -> str:
    """The key prefix the dumps live under (the instance role may write only there): empty, or
    segments of letters, digits and ._- each ending in '/'."""
    value = string(value, path, s3_prefix.allowed)
    if value and not re.fullmatch(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,62}/){1,8}", value):
        raise NotAllowed(path, s3_prefix.allowed, value)
    return value


s3_prefix.allowed = ("empty or path segments (letters, digits and ._-, not starting with '.' or "
                     "'-') each ending in '/', such as 'bingo-host/' or 'prod/bingo/'")
