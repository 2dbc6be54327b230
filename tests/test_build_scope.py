"""The systemd scope a deployment's virtualenv build runs in (builder.build_scope); that pip
really runs there, with the weights and memory bounds applied, is checked on the test host
(tests/test_deploy.py, while AfterInstall's pip runs)."""

from __future__ import annotations

from bingo_host.deploy import builder
from bingo_host.facts import systemd

MIB = 1024 * 1024


def test_build_runs_in_a_low_weight_bounded_scope(monkeypatch):
    monkeypatch.setattr(systemd, "booted", lambda: True)
    argv = builder.build_scope(512 * MIB)
    assert argv[:3] == ["systemd-run", "--scope", "--quiet"] and argv[-1] == "--"
    props = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-p"]
    assert props == ["CPUWeight=20", "IOWeight=20", "MemoryHigh=256M", "MemoryMax=384M"]
    assert not any(arg.startswith("--slice") for arg in argv)  # system.slice: beside the services


def test_without_systemd_the_build_runs_directly(monkeypatch):
    monkeypatch.setattr(systemd, "booted", lambda: False)
    assert builder.build_scope(512 * MIB) == []
