"""The checks behind each config field: each takes (value, dotted path) and returns the
normalised value or raises ConfigError naming the field and the reason."""

from __future__ import annotations

import ipaddress
import re
import shutil
from typing import Any, Callable

from . import subp
from .errors import ConfigError
from .facts.platforms import PLATFORMS
from .layout import BACKUP_DB_USER, DUMP_DB_USER, OWN_TREES, RESTORE_DB_USER
from .secrets import reference_problem

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


# The OS's own trees: nothing bingo-host manages goes at or under them (/lib* counts too).
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys", "/run",
                "/var/run", "/var/lock")
# Shared directories: a parent of ours at most, never ours (bootstrap chowns and chmods its
# directories, and a volume mounted on one hides what the system keeps there).
SYSTEM_DIRS = ("/tmp", "/var", "/var/lib", "/var/tmp", "/var/log", "/var/cache", "/var/spool",
               "/var/mail", "/var/www", "/var/opt", "/var/local", "/var/backups", "/home", "/root",
               "/opt", "/srv", "/mnt", "/media")


def within(child: str, parent: str) -> bool:
    """child is parent or lies under it (both normalised absolute paths)."""
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def owned_dir(*reserved: str) -> Check:
    """An absolute path bingo-host may own: not a system directory, nothing under the OS's own
    trees, nor under the reserved trees given; neither in nor around bingo-host's own trees (a
    volume mounted there would hide the toolkit root runs, or bootstrap would hand it to the app)."""
    def check(value, path):
        value = absolute_path(value, path)
        top = "/" + value.split("/")[1]
        tree = top if top.startswith("/lib") else next(
            (t for t in SYSTEM_TREES + reserved if within(value, t)), None)
        if tree:
            raise ConfigError(path, f"{value} {'is' if value == tree else 'is inside'} {tree}, "
                                    "which belongs to the system")
        if value in SYSTEM_DIRS:
            raise ConfigError(path, f"{value} is a system directory: name a directory of its own "
                                    f"under it (such as {value}/music-bingo)")
        for own in OWN_TREES:
            how = "is" if value == own else "is inside" if within(value, own) else \
                "contains" if within(own, value) else None
            if how:
                raise ConfigError(path, f"{value} {how} {own}, which is bingo-host's own")
        return value
    return check


# A disk's name under /dev (/dev/shm/x or /dev/tty are files there too, but no disk).
block_device = pattern(
    r"/dev/(?:(?:sd|xvd|vd)[a-z]{1,3}[0-9]{0,3}|nvme[0-9]{1,3}n[0-9]{1,3}(?:p[0-9]{1,3})?"
    r"|loop[0-9]{1,4}|mapper/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,126}"
    r"|disk/by-(?:id|uuid|label|path|partuuid|partlabel)/[A-Za-z0-9_+:@=-][A-Za-z0-9_.+:@=-]{0,254})",
    "must be a block device under /dev such as /dev/sdf, /dev/xvdf, /dev/nvme1n1, /dev/loop0 or "
    "/dev/disk/by-id/NAME")


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


PASSWORD_CHARS = re.compile(r"[A-Za-z0-9!#$&()*+,./:<=>?@\[\]^_{|}~-]{12,128}")


def password(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID | a literal (discouraged)."""
    value = string(value, path)
    if value == "generate":
        return value
    if value.startswith(("ssm:", "secretsmanager:")):
        problem = reference_problem(value)
        if problem:
            raise ConfigError(path, problem)
        return value
    if not PASSWORD_CHARS.fullmatch(value):
        raise ConfigError(
            path, "a literal password needs 12 to 128 characters from letters, digits and "
                  "!#$&()*+,./:<=>?@[]^_{|}~- (no quotes, backslash, ';', '%' or spaces); "
                  "prefer 'generate', 'ssm:NAME' or 'secretsmanager:ID'")
    return value


def mail_password(value, path) -> str:
    """ssm:NAME | secretsmanager:ID | a literal (discouraged): the mail service issues it, so
    there is nothing to generate."""
    if value == "generate":
        raise ConfigError(path, "cannot be 'generate' (the mail service issues the password): use "
                                "'ssm:NAME' or 'secretsmanager:ID'")
    return password(value, path)


# An SMTP login: SES's is an access key id, other services' an e-mail address.
smtp_username = pattern(r"[A-Za-z0-9@._+=-]{1,128}",
                        "1 to 128 letters, digits and @._+=- (no spaces, quotes or '%')")


def secret_source(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID: never the secret itself."""
    value = string(value, path)
    if value != "generate" and not value.startswith(("ssm:", "secretsmanager:")):
        raise ConfigError(path, "must be 'generate', 'ssm:NAME' or 'secretsmanager:ID' (the value "
                                "itself never goes into the config file)")
    return password(value, path)


SIZE = re.compile(r"(\d+)\s*([MG])i?B?", re.IGNORECASE)


def secret_reference(value, path) -> str:
    """ssm:NAME | secretsmanager:ID: where a secret lives, for secrets bingo-host only reads."""
    value = string(value, path)
    if not value.startswith(("ssm:", "secretsmanager:")):
        raise ConfigError(path, "must be 'ssm:NAME' or 'secretsmanager:ID' (the secret itself "
                                "never goes into the config file)")
    return password(value, path)


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


def systemd_calendar(value: str, path: str) -> None:
    """systemd is the judge of an OnCalendar= expression: ask systemd-analyze where it exists (on
    a workstation without it, schedule()'s character check is what holds)."""
    if shutil.which("systemd-analyze") is None:
        return
    if not subp.run(["systemd-analyze", "calendar", "--", value], rcs=range(256), timeout=30).ok:
        raise ConfigError(path, f"systemd does not accept {shown(value)} as an OnCalendar= expression")


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


# A KMS key or alias ARN: its region and account are part of what the host trusts.
kms_key_arn = pattern(
    r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250})",
    "must be a KMS key or alias ARN such as "
    "arn:aws:kms:eu-west-1:123456789012:alias/bingo-bundle-signing")


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
