"""Distribution packages: nginx, MariaDB server, venv support, the app's build dependencies."""

from __future__ import annotations

import os
from contextlib import contextmanager

from ... import subp

NAME = "packages"
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def installed(output: str) -> set[str]:
    """Names from `dpkg-query -W -f '${Package} ${db:Status-Status}'` or `rpm -qa` output."""
    names = set()
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == "installed"):
            names.add(parts[0])
    return names


def wanted(ctx) -> list[str]:
    p = ctx.platform
    return list(p.packages) + (list(p.mariadb_server_packages) if ctx.cfg.database.local else [])


@contextmanager
def services_held_off(enabled: bool):
    """Keep Debian maintainer scripts from starting MariaDB on the wrong datadir mid-install."""
    if not enabled or os.path.exists(POLICY_RC_D):
        yield
        return
    with open(POLICY_RC_D, "w") as f:
        f.write("#!/bin/sh\n# bingo-host: no service starts while packages install\nexit 101\n")
    os.chmod(POLICY_RC_D, 0o755)
    try:
        yield
    finally:
        os.unlink(POLICY_RC_D)


def converge(ctx) -> str:
    want = wanted(ctx)
    have = installed(subp.run(list(ctx.platform.query_installed_cmd)).stdout)
    missing = [p for p in want if p not in have]
    if not missing:
        return f"all {len(want)} packages installed"

    def install():
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        with services_held_off(ctx.platform.block_service_starts):
            if ctx.platform.block_service_starts:  # apt: refresh the lists once before installing
                subp.run(["apt-get", "update", "-q"], timeout=600, env=env)
            subp.run([*ctx.platform.install_cmd, *missing], timeout=1800, env=env)

    ctx.change(f"install {' '.join(missing)}", install)
    return ""
