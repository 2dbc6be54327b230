"""Every converge step, run from recorded facts: one case file per host state under
tests/steps/<step>/, each saying what the step must change there (tests/recorded.py says how a
case records the host). What needs a kernel (mkfs, mount, systemd starting units, nginx -t,
MariaDB) stays in the host tests."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from bingo_host.converge import steps as steps_package
from bingo_host.converge.engine import run_steps
from tests.recorded import NotRecorded, RecordedContext, load

CASES = Path(__file__).parent / "steps"
STEP_MODULES = sorted(p.stem for p in Path(steps_package.__file__).parent.glob("*.py")
                      if p.stem != "__init__")
CASE_FILES = sorted(CASES.glob("*/*.yaml"))


UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def matches(changes: list[str], expected: list[str]) -> bool:
    """Each change is its expected description; `{uuid}` there stands for a new random UUID."""
    return len(changes) == len(expected) and all(
        re.fullmatch(re.escape(e).replace(re.escape("{uuid}"), UUID), c) for c, e in zip(changes, expected))


def run_case(path: Path):
    case = load(path)
    step = importlib.import_module(f"bingo_host.converge.steps.{path.parent.name}")
    ctx = RecordedContext(case, f"{path.parent.name}/{path.name}")
    result = run_steps(ctx, [step])[0]
    return case, ctx, result


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_step_case(path):
    case, ctx, result = run_case(path)
    if "error" in case:
        assert result.status == "failed", f"expected the step to fail; it {result.status}: {result.detail}"
        assert case["error"] in result.detail
    else:
        assert result.status != "failed", result.detail
        if not ctx.changes:
            assert result.detail == case["detail"]
    assert matches(ctx.changes, case.get("changes", [])), ctx.changes
    assert ctx.warnings == case.get("warnings", [])
    assert not ctx.unread(), f"recorded but never read: {ctx.unread()}"
    read_units = {key for name, key in ctx.read if name == "systemd.states"}
    assert read_units <= ctx.prefetched, f"units read but not in the step's UNITS: {read_units - ctx.prefetched}"


def test_every_step_has_cases_and_every_case_a_step():
    have = {p.parent.name for p in CASE_FILES}
    assert sorted(have) == STEP_MODULES
    few = [s for s in STEP_MODULES if len(list((CASES / s).glob("*.yaml"))) < 2]
    assert not few, f"steps with fewer than two cases (a fresh and a converged host): {few}"


def test_a_read_the_case_does_not_record_fails_naming_it(tmp_path):
    (tmp_path / "nginx").mkdir()
    case = tmp_path / "nginx" / "bare.yaml"
    case.write_text("files: {'*': same}\nfacts: {}\n")
    with pytest.raises(NotRecorded, match=r"nginx/bare.yaml: the step read paths.lexists\("
                                             r"'/etc/nginx/sites-enabled/default'\); the case records "
                                             r"no paths.lexists"):
        run_case(case)
