"""Distribution packages: nginx, MariaDB server, venv support, the app's build dependencies."""

from __future__ import annotations

from ...facts.packages import installed
from ...ops import packages

NAME = "packages"


def wanted(ctx) -> list[str]:
    p = ctx.platform
    return list(p.packages) + (list(p.mariadb_server_packages) if ctx.cfg.database.local else [])


def converge(ctx) -> str:
    want = wanted(ctx)
    have = installed(ctx.platform)
    missing = [p for p in want if p not in have]
    if not missing:
        return f"all {len(want)} packages installed"
    ctx.change(f"install {' '.join(missing)}", lambda: packages.install(ctx.platform, missing))
    return ""
