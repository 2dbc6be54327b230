"""Installed distribution packages: the platform's query (dpkg-query or rpm) and its parser."""

from __future__ import annotations

from .. import subp
from .platforms import Platform


def parse(output: str) -> set[str]:
    """Names from `dpkg-query -W -f '${Package} ${db:Status-Status}'` or `rpm -qa` output
    (dpkg also lists removed packages whose config files remain: not installed)."""
    names = set()
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == "installed"):
            names.add(parts[0])
    return names


def installed(platform: Platform) -> set[str]:
    return parse(subp.run(list(platform.query_installed_cmd)).stdout)
