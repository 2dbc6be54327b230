"""Atomic, change-only writes."""

import os
import stat

import pytest

from bingo_host.ops import files


def test_create_then_unchanged(tmp_path):
    target = tmp_path / "a" / "site.conf"
    change = files.ensure(target, "one\n", 0o644)
    assert change.action == "create" and target.read_text() == "one\n"
    inode = target.stat().st_ino
    assert files.ensure(target, "one\n", 0o644) is None
    assert target.stat().st_ino == inode  # not rewritten


def test_update_replaces_atomically_with_mode_set_before_rename(tmp_path):
    target = tmp_path / "bingo.ini"
    files.ensure(target, "old\n", 0o644)
    old_inode = target.stat().st_ino
    change = files.ensure(target, "new\n", 0o640)
    assert change.action == "update"
    assert "-old" in change.diff and "+new" in change.diff
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_ino != old_inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["bingo.ini"]  # no temp files left


def test_mode_only_change(tmp_path):
    target = tmp_path / "f"
    files.ensure(target, "x", 0o644)
    change = files.ensure(target, "x", 0o600)
    assert change.action == "chmod/chown" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_owner_is_compared_and_set(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    target = tmp_path / "f"
    files.ensure(target, "x", 0o644, "root", "root")
    assert files.ensure(target, "x", 0o644, "root", "root") is None
    change = files.ensure(target, "x", 0o644, "nobody", "nogroup")
    assert change.action == "chmod/chown"
    assert target.stat().st_uid != 0


def test_secret_diff_is_hidden(tmp_path):
    target = tmp_path / "bingo.ini"
    files.ensure(target, "passwd = old-secret\n", 0o600, secret=True)
    change = files.plan(target, "passwd = new-secret\n", 0o600, secret=True)
    assert "secret" not in change.diff.replace("holds secrets", "")
    assert "old-secret" not in change.diff and "new-secret" not in change.diff


def test_dry_run_changes_nothing(tmp_path):
    target = tmp_path / "f"
    change = files.ensure(target, "x", 0o644, dry_run=True)
    assert change.action == "create" and not target.exists()


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f"
    files.ensure(target, "old", 0o644)
    with pytest.raises(KeyError):
        files.write_atomic(target, "new", 0o644, owner="no-such-user-bingo")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
