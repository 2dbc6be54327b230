"""The firewall step's rules file and its reading of nft's recorded JSON listing (nft 1.0.6,
Debian 12); its decisions on recorded hosts are tests/steps/firewall/'s cases, and
tests/test_firewall_host.py runs it for real in a test host of its own network namespace."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from bingo_host import layout
from bingo_host.config import Config, with_values
from bingo_host.config_file import load_config_text
from bingo_host.context import Context
from bingo_host.converge.steps import firewall as step
from bingo_host.converge.steps import packages as packages_step
from bingo_host.errors import BingoHostError, ConfigError
from bingo_host.facts import firewall as live
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.render import render_all
from bingo_host.resolve import resolve

RECORDED = (Path(__file__).parent / "fixtures/nft/bingo_host.json").read_text()  # uid 998 denied
APP = {"music-bingo": 998}


def listing(edit=None) -> str:
    data = json.loads(RECORDED)
    if edit:
        edit(data["nftables"])
    return json.dumps(data)


def recorded(edit=None) -> live.LiveTable:
    return live.parse(listing(edit))


# -- the rules file --

def test_ruleset_rejects_both_metadata_addresses_for_the_listed_uids_only():
    text = step.ruleset({"music-bingo": 998, "bingo-build": 997, "alias": 998})
    assert "table inet bingo_host\ndelete table inet bingo_host\n\ntable inet bingo_host {\n" in text
    assert "elements = { 997, 998 }  # bingo-build=997, alias=998, music-bingo=998" in text
    assert "type filter hook output priority filter; policy accept;" in text
    rules = [line.strip() for line in text.splitlines() if "reject" in line]
    assert rules == ["ip daddr 169.254.169.254 meta skuid @no_metadata reject with icmpx admin-prohibited",
                     "ip6 daddr fd00:ec2::254 meta skuid @no_metadata reject with icmpx admin-prohibited"]


def test_ruleset_never_denies_root_and_never_an_empty_set():
    with pytest.raises(BingoHostError, match="will not deny root .*evil has uid 0"):
        step.ruleset({"music-bingo": 998, "evil": 0})
    with pytest.raises(BingoHostError, match="no account"):
        step.ruleset({})


def test_denied_users_are_the_app_user_and_the_build_account():
    assert step.denied_users(Config()) == ("music-bingo", "bingo-build")
    assert step.denied_users(with_values(Config(), app={"user": "web"})) == ("web", "bingo-build")


# -- what the kernel holds --

def test_recorded_listing_parses_and_matches():
    table = recorded()
    assert table == live.LiveTable(frozenset({998}), "output", "accept", step.ADDRESSES, 0)
    assert step.why_reload(table, APP) is None


def _drop_rule(address):
    def edit(items):
        items[:] = [i for i in items if address not in json.dumps(i.get("rule", {}))]
    return edit


def _set(key, value):
    def edit(items):
        for i in items:
            for kind in ("set", "chain"):
                if kind in i and key in i[kind]:
                    i[kind][key] = value
    return edit


def _add_rule(items):
    rule = copy.deepcopy(next(i for i in items if "rule" in i))
    rule["rule"]["expr"] = [{"accept": None}]
    items.append(rule)


@pytest.mark.parametrize("edit, reason", [
    (_drop_rule("fd00:ec2::254"), "rejects [('ip', '169.254.169.254')] (and 0 other rules)"),
    (_drop_rule("169.254.169.254"), "rejects [('ip6', 'fd00:ec2::254')]"),
    (_add_rule, "(and 1 other rules)"),
    (_set("elem", [998, 1000]), "denies uids [998, 1000], not [998]"),
    (_set("elem", []), "denies uids [], not [998]"),
    (_set("policy", "drop"), "not an accepting output hook"),
    (_set("hook", "input"), "not an accepting output hook"),
])
def test_a_changed_table_is_reloaded(edit, reason):
    assert reason in step.why_reload(recorded(edit), APP)


def test_a_rule_without_the_uid_match_or_the_reject_is_not_the_reject():
    def no_uid(items):
        for i in items:
            if "rule" in i:
                i["rule"]["expr"] = [e for e in i["rule"]["expr"] if "skuid" not in json.dumps(e)]

    def no_reject(items):
        for i in items:
            if "rule" in i:
                i["rule"]["expr"] = [e for e in i["rule"]["expr"] if "reject" not in e]
    for edit in (no_uid, no_reject):
        table = recorded(edit)
        assert (table.rejects, table.other_rules) == ((), 2)


def test_a_narrower_reject_is_not_the_reject():
    """A further match (only tcp, say) rejects less: it does not count as the rule."""
    def narrower(items):
        for i in items:
            if "rule" in i:
                i["rule"]["expr"].insert(2, {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                                                       "right": "tcp"}})

    def not_equal(items):
        for i in items:
            if "rule" in i:
                i["rule"]["expr"][1]["match"]["op"] = "!="
    for edit in (narrower, not_equal):
        assert (recorded(edit).rejects, recorded(edit).other_rules) == ((), 2)


def test_live_table_asks_nft_for_json_with_numeric_uids(tmp_path):
    """A stand-in nft: what live_table runs, and how it reads the three answers nft gives."""
    nft = tmp_path / "nft"
    listing_file = tmp_path / "listing.json"
    listing_file.write_text(RECORDED)
    nft.write_text(f"""#!/bin/sh
[ "$*" = "-j -n list table inet bingo_host" ] || {{ echo "unexpected: $*" >&2; exit 3; }}
case "$(cat {tmp_path}/mode)" in
  ok) cat {listing_file} ;;
  missing) echo "Error: No such file or directory" >&2; exit 1 ;;
  denied) echo "Error: Operation not permitted" >&2; exit 1 ;;
  *) exit 2 ;;
esac
""")
    nft.chmod(0o755)
    (tmp_path / "mode").write_text("ok")
    assert live.live_table(str(nft)) == recorded()
    (tmp_path / "mode").write_text("missing")
    assert live.live_table(str(nft)) is None
    (tmp_path / "mode").write_text("denied")
    with pytest.raises(BingoHostError, match="list table inet bingo_host failed: Error: Operation not permitted"):
        live.live_table(str(nft))
    (tmp_path / "mode").write_text("crash")
    with pytest.raises(BingoHostError):
        live.live_table(str(nft))


def test_missing_table_and_other_uids():
    assert step.why_reload(None, APP) == "the table is not loaded"
    assert "not [999]" in step.why_reload(recorded(), {"music-bingo": 999})


@pytest.mark.parametrize("text, message", [
    ("not json", "cannot read nft's listing"),
    ('{"tables": []}', "cannot read nft's listing"),
    (listing(_set("elem", ["music-bingo"])), "non-numeric uid"),
])
def test_unreadable_listings_are_errors(text, message):
    with pytest.raises(BingoHostError, match=message):
        live.parse(text)


# -- the step's decisions are tests/steps/firewall/'s cases; what its load checks afterwards --

def test_a_load_that_leaves_no_table_fails(monkeypatch):
    """The unit ran but the kernel holds no table (or another one): the step fails, naming it."""
    ran = []
    monkeypatch.setattr(step.service, "systemctl", lambda *args, timeout=180: ran.append(args))
    for after, why in ((None, "ran but the table is not loaded"),
                       (recorded(_set("elem", [1000])), "ran but it denies uids [1000], not [998]")):
        monkeypatch.setattr(step.live, "live_table", lambda nft, after=after: after)
        with pytest.raises(BingoHostError, match=re.escape(why)):
            step._load("/usr/sbin/nft", "reload", APP)
    monkeypatch.setattr(step.live, "live_table", lambda nft: recorded())
    step._load("/usr/sbin/nft", "start", APP)
    assert ran == [("reload", step.UNIT)] * 2 + [("start", step.UNIT)]


def test_uids_of_existing_and_missing_users():
    ctx = Context(Config(), platforms.PLATFORMS["debian12"], HostFacts(512 << 20, 2))
    assert step.uids(ctx, ("root", "no-such-user-bingo")) == ({"root": 0}, ["no-such-user-bingo"])


# -- what the other parts of bootstrap do for it --

def test_packages_and_the_emperor_follow_firewall_enabled():
    for platform in platforms.PLATFORMS.values():
        for enabled in (True, False):
            facts = HostFacts(512 << 20, 2)
            cfg = resolve(with_values(Config(), firewall={"enabled": enabled}), platform, facts)
            ctx = Context(cfg, platform, facts)
            assert ("nftables" in packages_step.wanted(ctx)) == enabled
            files = {f.template: f for f in render_all(cfg, platform, facts)}
            emperor = files["uwsgi-emperor.service"].content
            assert (f"Requires={layout.FIREWALL_UNIT}.service" in emperor) == enabled
            assert (f"After={layout.FIREWALL_UNIT}.service" in emperor) == enabled
            assert ("firewall.service" in files) == enabled
            if enabled:
                unit = files["firewall.service"].content
                assert f"ExecStart={platform.nft} -f {layout.FIREWALL_RULES}" in unit
                assert "\nExecStop" not in unit and "WantedBy=sysinit.target" in unit


def test_firewall_enabled_must_be_a_boolean():
    with pytest.raises(ConfigError, match="firewall.enabled"):
        load_config_text("firewall: {enabled: maybe}\n")
    assert load_config_text("firewall: {enabled: false}\n").firewall.enabled is False
