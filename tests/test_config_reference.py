"""docs/configuration.md is the schema's: every key in it with what it allows, its default and
what it means (the doc beside each field), as scripts/config-reference writes it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from dataclasses import fields
from pathlib import Path

import pytest

from bingo_host.config import Config

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "configuration.md"


def _generator():
    """scripts/config-reference as a module (a script: no .py suffix to import it by)."""
    loader = importlib.machinery.SourceFileLoader("config_reference", str(REPO / "scripts" / "config-reference"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def schema_keys() -> list[tuple[str, object]]:
    """(dotted key, field) of every key the config file takes."""
    keys = []
    for top in fields(Config):
        section = top.metadata.get("section")
        keys += [(f"{top.name}.{f.name}", f) for f in fields(section)] if section else [(top.name, top)]
    return keys


KEYS = schema_keys()


def documented(text: str) -> set[str]:
    """The keys the reference's tables name (a row's first cell)."""
    return set(re.findall(r"^\| `([a-z_.]+)` \|", text, re.MULTILINE))


def test_every_key_of_the_schema_is_in_the_reference():
    missing = [key for key, _ in KEYS if key not in documented(DOC.read_text())]
    assert not missing, f"docs/configuration.md lacks {missing}: run scripts/config-reference"


def test_the_reference_names_no_key_the_schema_lacks():
    assert documented(DOC.read_text()) == {key for key, _ in KEYS}


def test_the_reference_is_what_the_generator_writes():
    assert DOC.read_text() == _generator().reference(), "stale: run scripts/config-reference"


@pytest.mark.parametrize("key, field", KEYS, ids=[k for k, _ in KEYS])
def test_every_field_says_what_it_means_and_allows(key, field):
    assert len(field.metadata["doc"]) > 10 and field.metadata["check"].allowed


def test_the_key_finder_sees_a_row_go():
    """documented() reads the rows: a row without its key is a missing key."""
    text = DOC.read_text()
    assert "app.processes" in documented(text)
    assert "app.processes" not in documented(text.replace("| `app.processes` |", "| processes |"))
