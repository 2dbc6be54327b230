"""bingo-host's locks (ops/lock.py): root-only files in a root-only directory, so another user
(the app, after an exploit) can neither open one nor hold its flock; a holder still makes the
next run wait or refuse. Another user is `nobody`, for real: a subprocess that setuid()s to it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bingo_host import layout
from bingo_host.errors import BingoHostError
from bingo_host.ops import lock

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # one nobody may run (the venv's is under /root)
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="another user's view needs root")


@pytest.fixture
def locks(monkeypatch):
    """A lock directory under a directory every user may enter (as /run is), removed after."""
    parent = Path(tempfile.mkdtemp(prefix="bingo-locks-"))
    parent.chmod(0o755)
    monkeypatch.setenv("BINGO_HOST_LOCK_DIR", str(parent / "locks"))
    yield parent / "locks"
    subprocess.run(["rm", "-rf", str(parent)], check=True)


def as_nobody(code: str, **kw) -> subprocess.Popen:
    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    return subprocess.Popen([SYSTEM_PYTHON, "-c", code], preexec_fn=drop, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


OPEN = "import os, sys\ntry:\n    os.open(sys.argv[1], os.O_RDONLY)\nexcept PermissionError:\n    print('denied')\nelse:\n    print('opened')\n"


def nobody_opens(path: Path) -> str:
    p = as_nobody(OPEN.replace("sys.argv[1]", repr(str(path))))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return out.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("name, take, what", [
    ("host", lock.host_lock, "another bingo-host run"),
    ("snapshot", lock.snapshot_lock, "a bingo-host snapshot"),
    ("backup", lock.backup_lock, "a bingo-host backup or drill"),
])
def test_each_lock_is_a_0600_file_in_a_0700_directory_that_nobody_else_can_open(locks, name, take, what):
    with take(0):
        path = locks / f"{name}.lock"
        assert (mode(locks), mode(path)) == (0o700, 0o600)
        assert os.lstat(path).st_uid == 0 and path.read_text() == str(os.getpid())
        assert nobody_opens(path) == "denied"
        with pytest.raises(BingoHostError) as held:  # a second open file: its own flock
            with take(0):
                pass
        assert str(held.value) == f"{what} (pid {os.getpid()}) holds {path}"
    # each layer holds alone: the file is 0600 even in a directory others may enter
    locks.chmod(0o711)
    assert nobody_opens(path) == "denied"
    path.chmod(0o644)  # and the check itself can tell: an older version's file opens
    assert nobody_opens(path) == "opened"


def test_an_older_versions_0644_lock_held_by_another_user_blocks_nothing(locks):
    locks.mkdir(mode=0o755)
    path = locks / "snapshot.lock"
    path.write_text("")
    path.chmod(0o644)
    old = os.stat(path).st_ino
    holder = as_nobody("import fcntl, os, sys, time\n"
                       f"fd = os.open({str(path)!r}, os.O_RDONLY)\n"
                       "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n")
    try:
        assert holder.stdout.readline().strip() == "held"
        with lock.snapshot_lock(wait=0):
            assert (mode(locks), mode(path)) == (0o700, 0o600)
            assert os.stat(path).st_ino != old and os.lstat(path).st_uid == 0
    finally:
        holder.kill()
        holder.wait()


HOLD = ("import os, sys, time\nsys.path.insert(0, {repo!r})\nfrom bingo_host.ops import lock\n"
        "with lock.snapshot_lock():\n    print('held', flush=True)\n    time.sleep({seconds})\n")


def test_a_held_lock_refuses_at_once_or_is_waited_for(locks, caplog):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(repo=str(REPO), seconds=1.5)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BingoHostError, match=rf"a bingo-host snapshot \(pid {holder.pid}\) holds "
                                                 rf"{locks}/snapshot.lock$"):
            with lock.snapshot_lock(wait=0):
                pass
        caplog.clear()
        start = time.monotonic()
        with caplog.at_level(logging.INFO, logger="bingo_host"), lock.snapshot_lock(wait=30):
            waited = time.monotonic() - start
        assert 0.5 < waited < 10
        assert [r.getMessage() for r in caplog.records] == [f"waiting for a bingo-host snapshot to finish (pid {holder.pid}, "
                        f"lock {locks}/snapshot.lock)"]
    finally:
        holder.kill()
        holder.wait()


def test_a_bounded_wait_names_the_holder_and_how_long(locks):
    with lock.backup_lock():
        child = subprocess.run([sys.executable, "-c", "import sys\nsys.path.insert(0, %r)\n"
                                "from bingo_host.ops import lock\nwith lock.backup_lock(wait=0.5):\n"
                                "    pass\n" % str(REPO)], capture_output=True, text=True, timeout=30)
    assert child.returncode != 0
    assert (f"BingoHostError: a bingo-host backup or drill (pid {os.getpid()}) holds "
            f"{locks}/backup.lock after 0 s") in child.stderr


def test_whatever_stands_in_place_of_a_lock_file_is_replaced_not_followed(locks, tmp_path):
    locks.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"  # a root 0600 file, such as /etc/bingo-host/db-password
    target.write_text("keep")
    target.chmod(0o600)
    (locks / "host.lock").symlink_to(target)
    (locks / "backup.lock").write_text("")
    os.chown(locks / "backup.lock", NOBODY, NOBODY)
    os.chmod(locks / "backup.lock", 0o600)
    with lock.host_lock(0), lock.backup_lock():
        for name in ("host", "backup"):
            st = os.lstat(locks / f"{name}.lock")
            assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and mode(locks / f"{name}.lock") == 0o600
    assert target.read_text() == "keep"


def test_a_lock_file_made_under_a_tight_umask_is_still_0600(locks):
    old = os.umask(0o377)
    try:
        with lock.host_lock(0):
            assert mode(locks / "host.lock") == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("make", ["symlink", "foreign"])
def test_a_lock_directory_that_is_not_roots_own_is_refused(monkeypatch, tmp_path, make):
    where = tmp_path / "locks"
    if make == "symlink":
        (tmp_path / "real").mkdir(mode=0o700)
        where.symlink_to(tmp_path / "real")
    else:
        where.mkdir(mode=0o700)
        os.chown(where, NOBODY, NOBODY)
    monkeypatch.setenv("BINGO_HOST_LOCK_DIR", str(where))
    with pytest.raises(BingoHostError, match=f"^{where} must be a directory owned by uid 0 \\(the locks "
                                             "live there\\); it is not: move it away$"):
        with lock.host_lock(0):
            pass
    assert not (tmp_path / "real" / "host.lock").exists()


def test_a_lock_file_replaced_between_open_and_flock_is_not_the_one_held(locks, monkeypatch):
    """Another run may replace a bad file (see _open) while this one opened the old: the lock
    taken must be on the file the path names once it is held."""
    real = fcntl.flock
    calls = []

    def replaced_first(fd, op):
        if not calls:
            path = locks / "host.lock"
            path.unlink()
            path.write_text("")
            path.chmod(0o600)
        calls.append(os.fstat(fd).st_ino)
        return real(fd, op)

    monkeypatch.setattr(lock.fcntl, "flock", replaced_first)
    with lock.host_lock(0):
        assert len(calls) == 2 and calls[1] == os.stat(locks / "host.lock").st_ino


def test_the_older_versions_lock_files_go_once_the_real_directory_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(layout, "STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    for name in ("snapshot", "backup"):
        (tmp_path / "state" / f"{name}.lock").write_text("")
    with lock.snapshot_lock(), lock.backup_lock():  # the session's own directory: left alone
        pass
    assert sorted(os.listdir(tmp_path / "state")) == ["backup.lock", "snapshot.lock"]
    monkeypatch.delenv("BINGO_HOST_LOCK_DIR")
    monkeypatch.setattr(layout, "LOCK_DIR", str(tmp_path / "run-bingo-host"))
    with lock.snapshot_lock():
        assert (tmp_path / "run-bingo-host" / "snapshot.lock").exists()
    assert os.listdir(tmp_path / "state") == ["backup.lock"]
    with lock.backup_lock():
        pass
    assert os.listdir(tmp_path / "state") == []
    assert lock.legacy_path("host") == "/run/bingo-host.lock"


def test_a_directory_in_place_of_a_lock_file_is_refused(locks):
    (locks / "host.lock").mkdir(parents=True)
    with pytest.raises(BingoHostError, match=f"^cannot open the lock {locks}/host.lock: Is a directory$"):
        with lock.host_lock(0):
            pass


def test_a_lock_file_removed_between_two_opens_is_made_again(locks, monkeypatch):
    locks.mkdir(mode=0o700)
    (locks / "host.lock").write_text("")
    (locks / "host.lock").chmod(0o600)
    real = os.open
    gone = []

    def vanishing(path, flags, *args):
        if not flags & os.O_CREAT and not gone:
            gone.append(path)
            os.unlink(path)  # another run replaced it just now
        return real(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", vanishing)
    with lock.host_lock(0):
        assert gone and mode(locks / "host.lock") == 0o600


def test_a_holder_that_wrote_no_pid_is_named_unknown_and_junk_is_quoted(locks):
    with lock.backup_lock():
        pass
    fd = os.open(locks / "backup.lock", os.O_RDWR)
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BingoHostError, match=r"^a bingo-host backup or drill \(pid unknown\) holds "):
            with lock.backup_lock():
                pass
        os.pwrite(fd, b"\xff42", 0)  # junk is quoted, not a crash
        with pytest.raises(BingoHostError, match="^a bingo-host backup or drill \\(pid \ufffd42\\) holds "):
            with lock.backup_lock():
                pass
    finally:
        os.close(fd)


def test_a_lock_file_removed_once_locked_is_not_the_one_held(locks, monkeypatch):
    real = fcntl.flock
    calls = []

    def removed_after(fd, op):
        result = real(fd, op)
        if not calls:
            os.unlink(locks / "host.lock")  # another run replaced it: nothing there for a moment
        calls.append(os.fstat(fd).st_ino)
        return result

    monkeypatch.setattr(lock.fcntl, "flock", removed_after)
    with lock.host_lock(0):
        assert len(calls) == 2 and calls[1] == os.stat(locks / "host.lock").st_ino


@pytest.mark.parametrize("take", [lock.snapshot_lock, lock.backup_lock])
def test_snapshots_and_backups_refuse_at_once_unless_told_to_wait(locks, take):
    with take():
        with pytest.raises(BingoHostError) as held:
            with take():
                pass
    assert str(held.value).endswith(".lock")  # not "after N s": no wait at all
