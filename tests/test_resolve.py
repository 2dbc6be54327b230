"""'auto' is resolved once per command, by make_context, into a ResolvedConfig; render takes
nothing else, so a config nobody resolved cannot reach a template and none is resolved twice."""

from __future__ import annotations

import sys

import pytest

from bingo_host import context, render
from bingo_host import resolve as resolve_module
from bingo_host.config import Config, with_values
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import ResolvedConfig, resolve

DEBIAN = platforms.PLATFORMS["debian12"]
NANO = HostFacts(512 << 20, 2)


def test_render_refuses_a_config_nobody_resolved():
    with pytest.raises(TypeError, match="ResolvedConfig"):
        render.render_all(Config(), DEBIAN, NANO)
    assert render.render_all(resolve(Config(), DEBIAN, NANO), DEBIAN, NANO)


def test_resolve_refuses_a_resolved_config_and_leaves_no_auto():
    cfg = resolve(Config(), DEBIAN, NANO)
    assert isinstance(cfg, ResolvedConfig)
    assert (cfg.platform, cfg.app.user, cfg.app.processes, cfg.swap.size,
            cfg.cloudwatch_agent.enabled) == ("debian12", "music-bingo", 2, 1024, False)
    with pytest.raises(TypeError, match="resolved already"):
        resolve(cfg, DEBIAN, NANO)


def test_a_resolved_config_with_auto_left_cannot_be_made():
    cfg = resolve(Config(), DEBIAN, NANO)
    for section, values in (("app", {"processes": "auto"}), ("swap", {"size": "auto"}),
                            ("app", {"user": "auto"}), ("cloudwatch_agent", {"enabled": "auto"})):
        with pytest.raises(TypeError, match="still 'auto'"):
            with_values(cfg, **{section: values})


def test_one_context_resolves_once(monkeypatch):
    """make_context resolves; its files render, and its facts are read again, without another."""
    calls = []

    def counted(*args):
        calls.append(args)
        return resolve(*args)

    for module in list(sys.modules.values()):  # every name it is imported under
        if getattr(module, "__name__", "").startswith("bingo_host") and \
                getattr(module, "resolve", None) is resolve:
            monkeypatch.setattr(module, "resolve", counted)
    assert resolve_module.resolve is counted
    monkeypatch.setattr(context, "host_facts", lambda cfg: NANO)
    monkeypatch.setattr(context, "check_app_user", lambda cfg, platform: None)
    ctx = context.make_context(with_values(Config(), platform="debian12"), dry_run=True)
    assert isinstance(ctx.cfg, ResolvedConfig) and ctx.read_facts() == NANO
    ctx.managed_files()
    ctx.facts = HostFacts(1 << 30, 2)
    assert ctx.managed("bingo.ini")
    assert len(calls) == 1
