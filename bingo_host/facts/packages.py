"""Installed distribution packages: the platform's query (dpkg-query or rpm) and its parser."""

from __future__ import annotations

from .. import subp
from ..regular_file import read_regular
from .platforms import Platform

POLICY_RC_D = "/usr/sbin/policy-rc.d"
POLICY_MARK = "# bingo-host: no service starts while packages install"


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


def policy_rc_d_is_ours(path: str = POLICY_RC_D) -> bool:
    """True if path is the policy-rc.d bingo-host writes during an install (it has the mark)."""
    try:
        found = read_regular(path, limit=4096)
    except OSError:
        return False
    return found is not None and POLICY_MARK in found[0].decode(errors="replace").splitlines()
