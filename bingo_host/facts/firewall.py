"""The live state of bingo-host's own nftables table, as the kernel has it now.

Only what the firewall step compares is read, from nft's JSON listing: the uids in the table's
set, its chain's hook, and which destinations its rules reject for that set. Any other table
(the distribution's, an admin's) is never read or touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import subp
from ..errors import BingoHostError

FAMILY = "inet"
TABLE = "bingo_host"
UID_SET = "no_metadata"  # the uids whose packets to the metadata service are rejected
CHAIN = "output"


@dataclass(frozen=True)
class LiveTable:
    uids: frozenset[int]
    hook: str | None  # the chain's hook ("output"), None when the chain is missing
    policy: str | None  # the chain's policy ("accept")
    rejects: tuple[tuple[str, str], ...]  # (ip | ip6, address) each rule rejects for the set's uids
    other_rules: int  # rules in the chain that are not such a reject


def _reject(expr: list) -> tuple[str, str] | None:
    """(protocol, address) of a rule that is exactly `<ip|ip6> daddr ADDRESS meta skuid @UID_SET
    reject ...`; None for any other rule (one with a further match rejects less)."""
    if not isinstance(expr, list) or len(expr) != 3 or not all(isinstance(e, dict) for e in expr):
        return None
    daddr, skuid, verdict = expr[0].get("match") or {}, expr[1].get("match") or {}, expr[2]
    payload = daddr.get("left", {}).get("payload", {}) if isinstance(daddr.get("left"), dict) else {}
    meta = skuid.get("left", {}).get("meta", {}) if isinstance(skuid.get("left"), dict) else {}
    if (daddr.get("op"), payload.get("field"), skuid.get("op"), meta.get("key"), skuid.get("right")) \
            != ("==", "daddr", "==", "skuid", f"@{UID_SET}") or "reject" not in verdict \
            or not isinstance(daddr.get("right"), str):
        return None
    return payload.get("protocol"), daddr["right"]


def parse(text: str) -> LiveTable:
    """`nft -j -n list table inet bingo_host` -> LiveTable (-n: uids as numbers, not names)."""
    try:
        items = json.loads(text)["nftables"]
        uids, hook, policy, rejects, other = set(), None, None, [], 0
        for item in items:
            if "set" in item and item["set"].get("name") == UID_SET:
                elem = item["set"].get("elem", [])
                if not all(isinstance(e, int) for e in elem):
                    raise BingoHostError(f"nft listed set {UID_SET} with a non-numeric uid: {elem!r}")
                uids.update(elem)
            elif "chain" in item and item["chain"].get("name") == CHAIN:
                hook, policy = item["chain"].get("hook"), item["chain"].get("policy")
            elif "rule" in item and item["rule"].get("chain") == CHAIN:
                found = _reject(item["rule"].get("expr", []))
                if found:
                    rejects.append(found)
                else:
                    other += 1
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BingoHostError(f"cannot read nft's listing of table {FAMILY} {TABLE}: {exc}") from None
    return LiveTable(frozenset(uids), hook, policy, tuple(rejects), other)


def live_table(nft: str) -> LiveTable | None:
    """The table as loaded now; None when there is none (a fresh host, or a `flush ruleset`)."""
    result = subp.run([nft, "-j", "-n", "list", "table", FAMILY, TABLE], rcs=(0, 1), timeout=30)
    if result.returncode == 1:
        if "No such file or directory" in result.stderr:
            return None
        raise BingoHostError(f"{nft} list table {FAMILY} {TABLE} failed: {result.stderr.strip()}")
    return parse(result.stdout)
