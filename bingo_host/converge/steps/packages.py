"""Distribution packages: nginx, MariaDB server, venv support, the app's build dependencies,
the tools `bingo-host patch` uses (patches.enabled), and nft (firewall.enabled)."""

from __future__ import annotations

from ...facts.packages import installed, policy_rc_d_is_ours
from ...ops import packages

NAME = "packages"


def wanted(ctx) -> list[str]:
    p = ctx.platform
    return (list(p.packages) + (list(p.mariadb_server_packages) if ctx.cfg.database.local else [])
            + (list(p.patch_packages) if ctx.cfg.patches.enabled else [])
            + (list(p.firewall_packages) if ctx.cfg.firewall.enabled else []))


def converge(ctx) -> str:
    policy = packages.POLICY_RC_D
    if ctx.fact(policy_rc_d_is_ours, policy):  # left by a run killed while installing: blocks restarts
        ctx.change(f"remove the {policy} a killed run left",
                   lambda: packages.remove_policy_rc_d(policy))
    want = wanted(ctx)
    have = ctx.fact(installed, ctx.platform)
    missing = [p for p in want if p not in have]
    if not missing:
        return f"all {len(want)} packages installed"
    ctx.change(f"install {' '.join(missing)}", lambda: packages.install(ctx.platform, missing))
    return ""
