"""Atomic, change-only writes."""

import os
import stat

import pytest

from bingo_host import regular_file
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


# -- the app user owns shared/: whatever it put at a managed path, root neither blocks,
#    nor runs out of memory, nor reads or writes through a link --

def _run_bounded(code: str, timeout: float = 10):
    """code in a fresh interpreter: a FIFO would hang it, /dev/zero would eat its memory."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(repo)))


def _plant(ini, planted, secret):
    """What the app user can put where root reads bingo.ini: a FIFO, an endless file, a secret."""
    if planted == "fifo":
        os.mkfifo(ini)
    elif planted == "dev-zero":
        ini.symlink_to("/dev/zero")
    else:
        ini.symlink_to(secret)


@pytest.mark.parametrize("planted", ["fifo", "dev-zero", "link-to-secret"])
def test_planted_bingo_ini_is_replaced_not_read(tmp_path, planted):
    shared = tmp_path / "shared"
    shared.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$not-yours:19000::::::\n")
    ini = shared / "bingo.ini"
    _plant(ini, planted, secret)
    # the memory cap turns a read of /dev/zero into MemoryError quickly instead of a swapping host
    proc = _run_bounded(
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from bingo_host.ops import files\n"
        f"change = files.ensure({str(ini)!r}, '[database]\\npasswd = p\\n', 0o640, secret=True)\n"
        "print(change.action, change.diff)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("replace ") and "not-yours" not in proc.stdout
    assert not ini.is_symlink() and stat.S_ISREG(ini.lstat().st_mode)
    assert ini.read_text() == "[database]\npasswd = p\n"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o640
    assert secret.read_text() == "root:$6$not-yours:19000::::::\n"  # the link's target untouched
    assert sorted(p.name for p in shared.iterdir()) == ["bingo.ini"]


def test_read_regular_refuses_what_is_not_a_small_regular_file(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 101)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "big")
    for name, why in (("big", "larger than 100 bytes"), ("fifo", "not a regular file"),
                      ("link", "a symbolic link")):
        with pytest.raises(regular_file.NotRegularFile, match=why):
            regular_file.read_regular(tmp_path / name, limit=100)
    assert regular_file.read_regular(tmp_path / "missing") is None
    content, st = regular_file.read_regular(tmp_path / "big", limit=101)
    assert content == b"x" * 101 and st.st_size == 101


@pytest.mark.parametrize("planted", ["fifo", "dev-zero", "link-to-secret"])
def test_status_reads_no_planted_bingo_ini(tmp_path, planted):
    """`status` (root) reads the app's password back from shared/bingo.ini."""
    shared = tmp_path / "shared"
    shared.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("[database]\npasswd = from-the-link-target\n")
    ini = shared / "bingo.ini"
    _plant(ini, planted, secret)
    proc = _run_bounded(
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from bingo_host.config_file import load_config_text\n"
        "from bingo_host.status.database import app_password\n"
        "cfg = load_config_text('platform: debian12\\napp: {root: %s}\\n"
        "database: {password: \"ssm:/bingo/db\"}\\n')\n"
        "print(app_password(cfg))\n" % tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "None\n"
    (ini.unlink())
    ini.write_text("[database]\npasswd = 100%%\n")
    proc = _run_bounded(proc.args[2])
    assert proc.stdout == "100%\n", proc.stderr


def test_write_fifo_only_into_a_fifo_someone_reads(tmp_path):
    """The uWSGI master's FIFO sits in a directory of the app user's: root writes a byte into
    it only when it is a FIFO with a reader, never through a link, never into anything else,
    never waiting."""
    fifo = tmp_path / "master.fifo"
    os.mkfifo(fifo, 0o600)
    assert files.write_fifo(str(fifo), b"c") is False  # nobody reads: ENXIO, no wait
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert files.write_fifo(str(fifo), b"c") is True
        assert os.read(reader, 16) == b"c"
        link = tmp_path / "link.fifo"
        link.symlink_to(fifo)
        assert files.write_fifo(str(link), b"x") is False
        assert os.read(reader, 16) == b""  # nothing came through the link
    finally:
        os.close(reader)
    regular = tmp_path / "regular"
    regular.write_bytes(b"keep")
    assert files.write_fifo(str(regular), b"c") is False
    assert regular.read_bytes() == b"keep"
    assert files.write_fifo(str(tmp_path / "missing"), b"c") is False
    assert files.write_fifo(str(tmp_path), b"c") is False  # a directory
