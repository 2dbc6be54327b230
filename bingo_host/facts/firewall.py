"""The live state of bingo-host's own nftables table, as the kernel has it now.

Only what the firewall step compares is read: the table's comment (it carries the digest of the
rules file that loaded it), the uids in its set and how many rules its chain holds. Any other
table (the distribution's, an admin's) is never read or touched.
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
    comment: str
    uids: frozenset[int]
    hook: str | None  # the chain's hook ("output"), None when the chain is missing
    rules: int  # rules in the chain


def parse(text: str) -> LiveTable:
    """`nft -j list table inet bingo_host` -> LiveTable. A uid nft could name prints as
    the name unless -n is given; the step asks with -n, a name here is refused."""
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BingoHostError(f"cannot read nft's listing of table {FAMILY} {TABLE}: {exc}") from None
    comment, uids, hook, rules = "", set(), None, 0
    for item in items:
        if "table" in item:
            comment = item["table"].get("comment", "")
        elif "set" in item and item["set"].get("name") == UID_SET:
            elem = item["set"].get("elem", [])
            if not all(isinstance(e, int) for e in elem):
                raise BingoHostError(f"nft listed set {UID_SET} with a non-numeric uid: {elem!r}")
            uids.update(elem)
        elif "chain" in item and item["chain"].get("name") == CHAIN:
            hook = item["chain"].get("hook")
        elif "rule" in item and item["rule"].get("chain") == CHAIN:
            rules += 1
    return LiveTable(comment, frozenset(uids), hook, rules)


def live_table(nft: str) -> LiveTable | None:
    """The table as loaded now; None when there is none (a fresh host, or a `flush ruleset`)."""
    result = subp.run([nft, "-j", "-n", "list", "table", FAMILY, TABLE], rcs=(0, 1), timeout=30)
    if result.returncode == 1:
        if "No such file or directory" in result.stderr:
            return None
        raise BingoHostError(f"{nft} list table {FAMILY} {TABLE} failed: {result.stderr.strip()}")
    return parse(result.stdout)
