"""No test module imports another (nor does a helper or plugin import one): what modules share lives
in helpers and plugins named for what they provide (tests/kms.py, tests/templates.py, ...), so
running, moving or deleting one test module never changes another's tests or fixtures."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
IMPORTERS = sorted([*TESTS.glob("*.py"), *(TESTS / "harness").glob("*.py")])


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def imported_test_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) of every test module the code imports, however written: `import tests.test_x`,
    `from tests.test_x import y`, `from tests import test_x`, relative forms, and
    importlib.import_module / __import__ of a constant name; in functions too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if _is_test_module(base):
                found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _is_test_module(node.args[0].value):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


@pytest.mark.parametrize("source, package, expected", [
    ("import tests.test_volume", "tests", ["tests.test_volume"]),
    ("import tests.test_volume as v", "tests", ["tests.test_volume"]),
    ("from tests.test_volume import run_step", "tests", ["tests.test_volume"]),
    ("from tests import test_restore_host as r", "tests", ["tests.test_restore_host"]),
    ("from .test_status import SCHEMA", "tests", ["tests.test_status"]),
    ("from . import test_status", "tests", ["tests.test_status"]),
    ("from ..test_status import SCHEMA", "tests.harness", ["tests.test_status"]),
    ("import test_builder", "tests", ["test_builder"]),
    ("def f():\n    from tests.test_builder import sdist", "tests", ["tests.test_builder"]),
    ("importlib.import_module('tests.test_status')", "tests", ["tests.test_status"]),
    ("__import__('tests.test_status')", "tests", ["tests.test_status"]),
    ("from tests.templates import TEMPLATES\nfrom tests import kms\nimport tests.harness", "tests", []),
    ("from tests.test_helpers_are_not_here import x  # noqa", "tests", ["tests.test_helpers_are_not_here"]),
    ("import testinfra\nfrom tests.harness import testinfra_backend", "tests", []),
])
def test_every_way_of_importing_a_test_module_is_found(source, package, expected):
    assert [name for _, name in imported_test_modules(ast.parse(source), package)] == expected


def test_the_checked_files_are_the_suites():
    names = {p.name for p in IMPORTERS}
    assert {"conftest.py", "test_volume.py", "test_swap.py", "step_host.py", "fixtures.py"} <= names
    assert len([n for n in names if n.startswith("test_")]) > 50


@pytest.mark.parametrize("path", IMPORTERS, ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_module_is_imported_by_another_module_of_the_suite(path):
    package = ".".join(path.relative_to(TESTS.parent).parent.parts)
    found = imported_test_modules(ast.parse(path.read_text(), str(path)), package)
    assert not found, "\n".join(
        f"{path.relative_to(TESTS.parent)}:{line}: imports the test module {name}; move what it shares "
        "into a helper or plugin module (tests/conftest.py lists the plugins)" for line, name in found)
