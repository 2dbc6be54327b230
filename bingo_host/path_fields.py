"""The checks of paths on this host: absolute, plain segments, and only where bingo-host may own
a directory (not the OS's trees, not a shared directory, not around bingo-host's own trees); a
block device by a disk's name under /dev."""

from __future__ import annotations

import re

from .errors import ConfigError
from .fields import Check, pattern, shown, string
from .layout import OWN_TREES

# A path segment: never empty, '.' or '..' (its first character is no '.'), no space or quote.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def absolute_path(value, path) -> str:
    """Normalised: one '/' between segments, none at the end ('/' itself has no segment)."""
    value = string(value, path, absolute_path.allowed)
    if not value.startswith("/"):
        raise ConfigError(path, f"must be an absolute path (got {shown(value)})")
    segments = value.strip("/").split("/")
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ConfigError(
            path, "only letters, digits, '.', '_' and '-' are allowed in path segments "
                  f"(no '..', no empty segments, no spaces or quotes; got {shown(value)})")
    return "/" + "/".join(segments)


absolute_path.allowed = "an absolute path (letters, digits, '.', '_' and '-' in its segments)"


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
    check.allowed = ("an absolute path bingo-host may own: not a system directory, nor inside the OS's "
                     f"trees{''.join(f' or {r}' for r in reserved)}, nor in or around bingo-host's own")
    return check


# A disk's name under /dev (/dev/shm/x or /dev/tty are files there too, but no disk).
block_device = pattern(
    r"/dev/(?:(?:sd|xvd|vd)[a-z]{1,3}[0-9]{0,3}|nvme[0-9]{1,3}n[0-9]{1,3}(?:p[0-9]{1,3})?"
    r"|loop[0-9]{1,4}|mapper/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,126}"
    r"|disk/by-(?:id|uuid|label|path|partuuid|partlabel)/[A-Za-z0-9_+:@=-][A-Za-z0-9_.+:@=-]{0,254})",
    "a block device under /dev such as /dev/sdf, /dev/xvdf, /dev/nvme1n1, /dev/loop0 or "
    "/dev/disk/by-id/NAME")
