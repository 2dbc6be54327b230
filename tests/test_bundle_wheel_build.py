"""`bundle` from a source tree builds bingo-host's wheel with pip first (seconds): it says so
before, and when pip fails the end of pip's output reaches stderr, then one error line, exit 1."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.deploy import wheel

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "sample_app"


def test_a_failing_wheel_build_shows_pips_output_then_one_line(tmp_path, monkeypatch):
    tree = tmp_path / "tree"  # a source tree whose build fails, saying why
    tree.mkdir()
    (tree / "setup.cfg").write_text("[metadata]\nname = bingo-host\n")
    (tree / "setup.py").write_text("import sys\nprint('broken on purpose', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(wheel, "TREE", tree)
    out = tmp_path / "r.zip"
    result = CliRunner().invoke(main, ["bundle", "--app", str(SAMPLE), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(f"bundle: building the bingo-host wheel from {tree} with pip")
    said, last = result.stderr.rstrip("\n").rsplit("\n", 1)
    assert said.startswith("pip: ") and "broken on purpose" in said, result.stderr
    assert last == (f"bingo-host: error: building the bingo-host wheel from {tree} failed (pip exit 1, "
                    "its output above): pass --wheel FILE or --no-wheel")
    assert "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [tree]
