"""The app has no cloud identity: its user cannot reach the instance metadata service.

Every local process can ask the metadata service for the instance role's credentials (a hop
limit of 1 stops only other hosts and containers). bingo-host's own nftables table, ``inet
bingo_host``, rejects what :func:`denied_users` send to 169.254.169.254 and fd00:ec2::254,
matched on the socket's owner (``meta skuid``); root and so the agents keep their access. Only
that table is touched, and a reject in it is final whatever another table accepts.
``bingo-host-firewall.service`` loads it at every boot before network-pre.target, and the app's
unit Requires= it, so the app never starts without it.
"""

from __future__ import annotations

from typing import Mapping

from ... import layout
from ...errors import BingoHostError
from ...facts import firewall as live
from ...facts import paths, systemd, users
from ...resolve import app_user
from ...ops import service
from ...ops.service import DAEMON_RELOAD
from ...render import HEADER, ManagedFile

NAME = "firewall"
UNIT = f"{layout.FIREWALL_UNIT}.service"
UNITS = (UNIT,)
ADDRESSES = (("ip", layout.IMDS_ADDRESS), ("ip6", layout.IMDS_ADDRESS_IPV6))


def denied_users(cfg) -> tuple[str, ...]:
    """Every account that must never reach the metadata service, in this one list: the app's
    user and the build account that runs a revision's build code. An account added here must
    exist before this step runs (the app step, before it in bootstrap, makes both)."""
    return (app_user(cfg), layout.BUILD_USER)


def uids(ctx, names: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """({user: uid} of those that exist, [those that do not])."""
    found, missing = {}, []
    for name in names:
        ids = ctx.fact(users.ids, name)
        if ids is None:
            missing.append(name)
        else:
            found[name] = ids[0]
    return found, missing


def _body(denied: Mapping[str, int]) -> str:
    """The table's set and chain: packets of these uids to either metadata address are rejected
    (at once: a connect fails instead of waiting for a timeout)."""
    if not denied:
        raise BingoHostError("firewall: no account to keep from the metadata service")
    if any(uid == 0 for uid in denied.values()):
        raise BingoHostError(f"firewall: will not deny root the metadata service "
                             f"({', '.join(u for u, uid in denied.items() if uid == 0)} has uid 0)")
    elements = ", ".join(str(uid) for uid in sorted(set(denied.values())))
    names = ", ".join(f"{user}={uid}" for user, uid in sorted(denied.items(), key=lambda i: (i[1], i[0])))
    rules = "".join(f"\t\t{family} daddr {address} meta skuid @{live.UID_SET} "
                    f"reject with icmpx admin-prohibited\n" for family, address in ADDRESSES)
    return (f"\tset {live.UID_SET} {{\n\t\ttype uid\n\t\telements = {{ {elements} }}  # {names}\n\t}}\n"
            f"\tchain {live.CHAIN} {{\n\t\ttype filter hook output priority filter; policy accept;\n"
            f"{rules}\t}}\n")


def ruleset(denied: Mapping[str, int]) -> str:
    """The rules file for ``{user: uid}``. Its first two lines make the table exist so that the
    delete cannot fail; nft applies the whole file as one transaction, so the table is replaced,
    never half there."""
    body = _body(denied)
    table = f"{live.FAMILY} {live.TABLE}"
    return (f"# {HEADER}\n# Loaded by {UNIT}: these users cannot reach the "
            f"instance metadata service.\ntable {table}\ndelete table {table}\n\n"
            f"table {table} {{\n{body}}}\n")


def why_reload(table: live.LiveTable | None, denied: Mapping[str, int]) -> str | None:
    """Why the kernel's table is not the one ruleset(denied) loads (None: it is)."""
    if table is None:
        return "the table is not loaded"
    if (table.hook, table.policy) != ("output", "accept"):
        return f"its {live.CHAIN} chain is missing or not an accepting output hook"
    if table.rejects != ADDRESSES or table.other_rules:
        return f"its {live.CHAIN} chain rejects {list(table.rejects)} (and {table.other_rules} other " \
               f"rules), not {list(ADDRESSES)}"
    if table.uids != frozenset(denied.values()):
        return f"it denies uids {sorted(table.uids)}, not {sorted(set(denied.values()))}"
    return None


def converge(ctx) -> str:
    if not ctx.cfg.firewall.enabled:
        return "off (firewall.enabled is false): the app's user can reach the instance metadata service"
    names = denied_users(ctx.cfg)
    denied, missing = uids(ctx, names)
    if missing:
        if ctx.dry_run:  # the app step would create it first
            ctx.change(f"keep {', '.join(missing)} from the metadata service once created")
            return ""
        raise BingoHostError(f"firewall: no user {', '.join(missing)} to keep from the metadata service")
    content = ruleset(denied)
    ctx.ensure_file(ManagedFile(layout.FIREWALL_RULES, content, 0o644, "root", "root", None, "firewall.nft"))
    ctx.ensure_file(ctx.managed("firewall.service"))  # owes DAEMON_RELOAD
    if ctx.pending(DAEMON_RELOAD):
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)
    nft = ctx.platform.nft
    if not ctx.fact(paths.exists, nft):
        if ctx.dry_run:  # the packages step would install it first
            ctx.change(f"load {layout.FIREWALL_RULES} once {nft} is installed")
            return ""
        raise BingoHostError(f"firewall: {nft} is missing (the packages step installs "
                             f"{' '.join(ctx.platform.firewall_packages)})")
    state = ctx.fact(systemd.states, UNIT)[UNIT]
    if not state.is_enabled:
        ctx.change(f"enable {UNIT}", lambda: service.systemctl("enable", UNIT))
    why = why_reload(ctx.fact(live.live_table, nft), denied)
    verb = "start" if not state.running else "reload" if why else None
    if verb:
        ctx.change(f"{verb} {UNIT} ({why or 'not active'})", lambda: _load(nft, verb, denied))
    return f"{', '.join(names)} cannot reach {layout.IMDS_ADDRESS} or {layout.IMDS_ADDRESS_IPV6}"


def _load(nft: str, verb: str, denied: Mapping[str, int]) -> None:
    """Start or reload the unit, then check the kernel holds what the file says."""
    service.systemctl(verb, UNIT)
    why = why_reload(live.live_table(nft), denied)
    if why:
        raise BingoHostError(f"firewall: {UNIT} ran but {why}")
