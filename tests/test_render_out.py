"""`render --out` into an earlier render: the files the earlier manifest listed and this render
does not are removed, only those and only regular files, never through a link."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host.cli import main

REPO = Path(__file__).resolve().parent.parent
BACKUPS = "backups: {enabled: true, bucket: bingo-backups}\n"
GONE = "etc/systemd/system/bingo-host-backup.timer"  # rendered with backups only


def _render(config: Path, out: Path, *extra):
    return CliRunner().invoke(main, ["--config", str(config), "render", "--out", str(out),
                                     "--platform", "debian12", *extra])


@pytest.fixture
def earlier(tmp_path):
    """A render with backups on (its timers listed), and a config with them off."""
    on, off = tmp_path / "on.yaml", tmp_path / "off.yaml"
    on.write_text(BACKUPS)
    off.write_text("{}\n")
    out = tmp_path / "out"
    assert _render(on, out).exit_code == 0
    assert (out / GONE).is_file()
    return out, off


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir()}


def test_the_files_only_the_earlier_render_listed_go_and_nothing_else(earlier):
    out, off = earlier
    (out / "etc" / "mine.txt").write_text("not rendered: kept\n")
    result = _render(off, out)
    assert result.exit_code == 0, result.output
    assert f"removed /{GONE} (not in this render)\n" in result.stdout
    listed = {f["path"].lstrip("/") for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert _files(out) == listed | {"manifest.json", "etc/mine.txt"}


def test_a_dry_run_lists_them_and_removes_none(earlier):
    out, off = earlier
    before = _files(out)
    result = _render(off, out, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would remove /{GONE} (not in this render)\n" in result.stdout
    assert _files(out) == before


def test_a_listed_path_now_a_link_or_under_one_is_not_followed(earlier, tmp_path):
    out, off = earlier
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bingo-host-backup.timer").write_text("outside: kept\n")
    (outside / "target").write_text("outside: kept\n")
    drill = out / "etc/systemd/system/bingo-host-restore-drill.timer"  # listed, not rendered next
    drill.unlink()
    drill.symlink_to(outside / "target")
    system = out / "etc/systemd/system"
    moved = tmp_path / "moved"
    system.rename(moved)
    system.symlink_to(outside)  # the whole directory now a link out of OUT
    result = _render(off, out)
    assert result.exit_code == 2 and "not following it" in result.stderr, result.output
    assert sorted(p.name for p in outside.iterdir()) == ["bingo-host-backup.timer", "target"]
    system.unlink()
    moved.rename(system)
    result = _render(off, out)
    assert result.exit_code == 0, result.output
    assert drill.is_symlink() and (outside / "target").read_text() == "outside: kept\n"
    assert not (out / GONE).exists()


def test_a_manifest_listing_paths_out_of_out_removes_nothing_there(tmp_path):
    off = tmp_path / "off.yaml"
    off.write_text("{}\n")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    (out / "manifest.json").write_text(json.dumps({"files": [
        {"path": "/../victim"}, {"path": "../victim"}, {"path": str(victim)}, {"path": 7}]}))
    result = _render(off, out)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "kept\n" and "removed" not in result.stdout
