"""The import graph of bingo_host/ against its layers (bingo_host/LAYERS): no cycle between modules
or between top-level parts, no import from a lower layer up to a higher one.

The checker, `import-cycles`, is a tool of the workplace kept outside the project, in its shared/
folder: found at $BINGO_CODEDEPLOY_SHARED, next to the checkout (../shared), or at /work/shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = REPO / "bingo_host" / "LAYERS"


def import_cycles() -> Path | None:
    candidates = [os.environ.get("BINGO_CODEDEPLOY_SHARED"), REPO.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (Path(c) / "tools" / "import-cycles").is_file():
            return Path(c) / "tools" / "import-cycles"
    return None


TOOL = import_cycles()
needs_tool = pytest.mark.skipif(TOOL is None, reason="shared/tools/import-cycles is not at "
                                "$BINGO_CODEDEPLOY_SHARED, ../shared or /work/shared")


def check(layers: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "bingo_host", "--layers", str(layers)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


@needs_tool
def test_imports_run_only_down_the_layers():
    result = check(LAYERS)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_tool
def test_an_import_up_a_layer_is_found(tmp_path):
    """The check reads the layers file: with facts put above ops, ops' imports of facts go up."""
    lines = LAYERS.read_text().splitlines()
    ops = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] == "ops")
    facts = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] == "facts")
    lines[ops], lines[facts] = lines[facts], lines[ops]
    swapped = tmp_path / "LAYERS"
    swapped.write_text("\n".join(lines) + "\n")
    result = check(swapped)
    assert result.returncode == 1
    assert "up a layer: bingo_host/ops/" in result.stdout and "-> bingo_host.facts" in result.stdout
