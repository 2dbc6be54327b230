"""`config check` prints a config `config check` accepts: every value in the form the file takes
(swap.size with its unit, server_name as names, the overrides as a list), so the printed config,
read again, is the same effective config. Over the example config and every config the suite
uses: each string in the tests that reads as a config, each recorded step case's, the test
hosts' (conftest.host_config)."""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.config import Config, to_dict
from bingo_host.config_file import load_config_text
from bingo_host.errors import ConfigError
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import resolve
from bingo_host.secret_fields import MASK

TESTS = Path(__file__).resolve().parent
EXAMPLE = TESTS.parent / "examples" / "config.yaml"
SECTIONS = [f.name for f in fields(Config)]
LOOKS_LIKE_A_CONFIG = re.compile(r"\s*\{?\s*(%s)\s*:" % "|".join(SECTIONS))
# 'auto' left; resolved for a nano on Debian; for a larger host on Amazon Linux
VARIANTS = [(None, None), ("debian12", HostFacts(512 << 20, 2)), ("amzn2023", HostFacts(8 << 30, 4))]


def _strings_in_the_tests() -> list[str]:
    """Every string constant in the tests' sources that a config file could hold (f-strings'
    parts are no configs: their values come at run time)."""
    found = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                for part in node.values:
                    part.value = None  # noqa: a fragment, not a config
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and LOOKS_LIKE_A_CONFIG.match(node.value):
                found.append(node.value)
    return found


def _host_config() -> str:
    """conftest.host_config's config (its device argument a loop device), read from its source:
    a test module imports no other test module or plugin."""
    tree = ast.parse((TESTS / "conftest.py").read_text())
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "host_config")
    data = next(n.value for n in ast.walk(func) if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", None) == "data")

    class Device(ast.NodeTransformer):
        def visit_Name(self, node):
            return ast.Constant("/dev/loop0")
    return yaml.safe_dump(ast.literal_eval(Device().visit(data)))


def _configs() -> list[tuple[str, str]]:
    """(where, text) of every config the suite uses that `config check` accepts."""
    texts = [("examples/config.yaml", EXAMPLE.read_text()), ("conftest.host_config", _host_config())]
    texts += [(f"tests/*.py: {t[:40]!r}", t) for t in _strings_in_the_tests()]
    for case in sorted((TESTS / "steps").rglob("*.yaml")):
        recorded = yaml.safe_load(case.read_text()) or {}
        if recorded.get("config"):
            texts.append((str(case.relative_to(TESTS)), yaml.safe_dump(recorded["config"])))
    accepted, seen = [], set()
    for where, text in texts:
        if text in seen:
            continue
        seen.add(text)
        try:
            load_config_text(text)
        except ConfigError:
            continue  # a refusal the tests pin: nothing to print
        accepted.append((where, text))
    return accepted


CONFIGS = _configs()


def test_the_sweep_finds_the_suites_configs():
    """It must see what it claims to: the example, the test hosts', inline ones, recorded cases'."""
    wheres = [w for w, _ in CONFIGS]
    assert "examples/config.yaml" in wheres and "conftest.host_config" in wheres
    assert sum(w.startswith("tests/*.py") for w in wheres) > 50
    assert sum(w.startswith("steps/") for w in wheres) > 10
    assert any("swap: {size: 512M}" in t for _, t in CONFIGS)


def printed(cfg: Config, platform_name: str | None, facts: HostFacts) -> dict:
    """What `config check` prints (less its header line): 'auto' left, or resolved."""
    if platform_name is None:
        return to_dict(cfg)
    platform = platforms.get(platform_name)
    return to_dict(resolve(cfg, platform, facts))


def _unmasked(text: str, data: dict) -> dict:
    """data with the literal secrets the mask hides put back from the config's own text."""
    cfg = load_config_text(text)
    for section, secret in (("database", cfg.database.password), ("smtp", cfg.smtp.password)):
        if data[section]["password"] == MASK:
            data[section]["password"] = secret
    return data


@pytest.mark.parametrize("where, text", CONFIGS, ids=[w for w, _ in CONFIGS])
def test_what_config_check_prints_reads_back_as_the_same_config(where, text):
    cfg = load_config_text(text)
    for platform_name, facts in VARIANTS:
        first = printed(cfg, platform_name, facts)
        dump = yaml.safe_dump(first, sort_keys=False)  # (--json's: test_config_check_accepts_what_it_prints)
        if MASK in (first["database"]["password"], first["smtp"]["password"]):
            with pytest.raises(ConfigError, match="how `config check` masks a literal password"):
                load_config_text(dump)
            dump = yaml.safe_dump(_unmasked(text, copy.deepcopy(first)))
        again = load_config_text(dump)
        assert printed(again, platform_name, facts) == first, (where, dump)


def test_the_printed_swap_size_keeps_its_unit():
    assert to_dict(load_config_text("swap: {size: 2048M}"))["swap"]["size"] == "2G"
    assert to_dict(load_config_text("swap: {size: 1536M}"))["swap"]["size"] == "1536M"
    assert to_dict(load_config_text("swap: {size: 0}"))["swap"]["size"] == 0
    assert to_dict(load_config_text("swap: {size: auto}"))["swap"]["size"] == "auto"


@pytest.mark.parametrize("text", [EXAMPLE.read_text(), _host_config(),
                                  "swap: {size: 768M}\napp: {server_name: [a.example.com, b.example.com]}\n"
                                  "database: {password: 'ssm:/bingo/db'}\nhttps: {domain: Bingo.Example.com}\n"])
@pytest.mark.parametrize("args", [["--platform", "debian12"], ["--platform", "amzn2023", "--json"],
                                  ["--instance-type", "t3a.nano", "--platform", "debian12"]])
def test_config_check_accepts_what_it_prints(tmp_path, text, args):
    """The issue's own steps: `config check > eff.yaml; bingo-host --config eff.yaml config check`."""
    first, again = tmp_path / "config.yaml", tmp_path / "eff.yaml"
    first.write_text(text)
    printed_once = CliRunner().invoke(main, ["--config", str(first), "config", "check", *args])
    assert printed_once.exit_code == 0, printed_once.output + printed_once.stderr
    again.write_text(printed_once.stdout)
    printed_twice = CliRunner().invoke(main, ["--config", str(again), "config", "check", *args])
    assert printed_twice.exit_code == 0, printed_twice.stdout + printed_twice.stderr
    body = [out.stdout.split("\n", 1)[1] if "--json" not in args else out.stdout
            for out in (printed_once, printed_twice)]
    assert body[0] == body[1]
