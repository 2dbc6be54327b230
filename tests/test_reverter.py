"""ops.reverter on real files in a temporary directory, with a stand-in `nginx` on PATH whose
`-t` passes or fails: a rejected configuration is put back byte for byte (modes, symlinks, absent
files too) and owes no reload; an accepted one stays written and owes one."""

from __future__ import annotations

import os
import signal
import stat

import pytest

from bingo_host import layout
from bingo_host.config import Config
from bingo_host.context import Context
from bingo_host.errors import BingoHostError
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.ops import files, reverter
from bingo_host.ops.cleanup import Stopped
from bingo_host.ops.service import RELOAD_NGINX
from bingo_host.resolve import resolve


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Files as nginx's would be, a pending-action directory, and an `nginx` that logs its argv
    and exits 0 unless tmp/reject exists."""
    monkeypatch.setattr(layout, "STATE_DIR", str(tmp_path / "state"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nginx = bin_dir / "nginx"
    nginx.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/nginx.log\n'
                     f'[ -e {tmp_path}/reject ] || exit 0\n'
                     'echo "nginx: [emerg] unknown directive \\"brokn\\"" >&2\nexit 1\n')
    nginx.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    etc = tmp_path / "etc"
    etc.mkdir()
    files.write_atomic(etc / "site.conf", b"server { listen 80; }\n", 0o640)
    files.write_atomic(etc / "nginx.conf", b"events {}\n\x00binary\n", 0o644)
    os.symlink("../sites-available/default", etc / "default")
    paths = {name: str(etc / name) for name in ("site.conf", "nginx.conf", "default", "new.conf")}
    return tmp_path, paths


def context(dry_run=False) -> Context:
    platform, facts = platforms.PLATFORMS["debian12"], HostFacts(512 * 1024**2, 2)
    return Context(resolve(Config(), platform, facts), platform, facts, dry_run=dry_run)


def state(paths: dict[str, str]) -> dict:
    """Every path's bytes and mode, symlink target, or absence."""
    out = {}
    for name, path in paths.items():
        if os.path.islink(path):
            out[name] = ("link", os.readlink(path))
        elif os.path.exists(path):
            with open(path, "rb") as f:
                out[name] = ("file", f.read(), stat.S_IMODE(os.stat(path).st_mode))
        else:
            out[name] = None
    return out


def vandalise(paths: dict[str, str]) -> None:
    files.write_atomic(paths["site.conf"], b"brokn;\n", 0o600)
    os.chmod(paths["nginx.conf"], 0o600)  # same bytes, other mode
    os.unlink(paths["default"])
    files.write_atomic(paths["new.conf"], b"server {}\n", 0o644)


def test_a_rejected_configuration_is_put_back_and_owes_no_reload(host):
    tmp, paths = host
    before = state(paths)
    (tmp / "reject").touch()
    ctx = context()
    with pytest.raises(BingoHostError, match='nginx -t rejected(.|\n)*unknown directive "brokn"'):
        with reverter.writing(ctx, paths.values()):
            vandalise(paths)
    assert (tmp / "nginx.log").read_text() == "-t -q\n"
    assert state(paths) == before
    assert not ctx.pending(RELOAD_NGINX)


def test_an_accepted_configuration_stays_and_owes_a_reload(host):
    tmp, paths = host
    ctx = context()
    with reverter.writing(ctx, paths.values()):
        vandalise(paths)
        written = state(paths)
    assert (tmp / "nginx.log").read_text() == "-t -q\n"
    assert state(paths) == written and written["site.conf"] == ("file", b"brokn;\n", 0o600)
    assert ctx.pending(RELOAD_NGINX)  # paid by reverter.serve, now or by the next run


def test_a_failed_write_is_put_back_without_testing(host):
    tmp, paths = host
    before = state(paths)
    ctx = context()
    with pytest.raises(OSError):
        with reverter.writing(ctx, paths.values()):
            vandalise(paths)
            raise OSError("disk full")
    assert not (tmp / "nginx.log").exists()
    assert state(paths) == before and not ctx.pending(RELOAD_NGINX)


def test_a_signal_mid_write_puts_the_files_back(host):
    """SIGTERM (the agent's timeout, systemd stopping the unit) between the writes and the test."""
    tmp, paths = host
    before = state(paths)
    ctx = context()
    with pytest.raises(Stopped):
        with reverter.writing(ctx, paths.values()):
            vandalise(paths)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert not (tmp / "nginx.log").exists()
    assert state(paths) == before and not ctx.pending(RELOAD_NGINX)


def test_dry_run_neither_tests_nor_leaves_the_reload_owed(host):
    """The plan says it would test and reload; nothing runs, and no later run owes the reload."""
    tmp, paths = host
    ctx = context(dry_run=True)
    with reverter.writing(ctx, paths.values()):
        pass
    assert not (tmp / "nginx.log").exists() and ctx.changes == ["nginx -t"]
    assert ctx.pending(RELOAD_NGINX) and not context().pending(RELOAD_NGINX)


def test_backup_restores_only_what_changed(host):
    _, paths = host
    before = state(paths)
    backup = reverter.Backup(paths.values())
    untouched = os.stat(paths["nginx.conf"]).st_ino
    vandalise(paths)
    os.chmod(paths["nginx.conf"], 0o644)  # back as it was: not rewritten
    assert sorted(backup.restore()) == sorted(paths[n] for n in ("site.conf", "default", "new.conf"))
    assert state(paths) == before and os.stat(paths["nginx.conf"]).st_ino == untouched
    assert backup.restore() == []


@pytest.fixture
def mariadb_host(tmp_path, monkeypatch):
    """A server config file and a `systemctl` that logs its argv, says the unit is active, and
    fails `restart` while the config file holds "bad"."""
    monkeypatch.setattr(layout, "STATE_DIR", str(tmp_path / "state"))
    cnf = tmp_path / "zz-bingo-host.cnf"
    files.write_atomic(cnf, b"[mysqld]\ngood\n", 0o644)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\n'
        'case "$1" in show) printf "Id=mariadb.service\\nLoadState=loaded\\nActiveState=active\\n'
        'UnitFileState=enabled\\n";; restart) ! grep -q bad ' + str(cnf) + ' || '
        '{ echo "Job for mariadb.service failed" >&2; exit 1; };; esac\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path, str(cnf)


OWED = "restart mariadb"


def restart_on(mariadb_host, new: bytes, first: bool = False):
    """Back the config up (first: nothing there yet), write `new`, owe the restart and run
    running_or_put_back: (its state or the error it raised, the context, the systemctl verbs)."""
    tmp, cnf = mariadb_host
    if first:
        os.unlink(cnf)
    backup = reverter.Backup([cnf])
    files.write_atomic(cnf, new, 0o600)
    ctx = context()
    ctx.set_pending(OWED)
    try:
        outcome = reverter.running_or_put_back(ctx, "mariadb.service", OWED, backup)
    except BingoHostError as exc:
        outcome = exc
    verbs = [line.split()[0] for line in (tmp / "systemctl.log").read_text().splitlines()]
    return outcome, ctx, verbs


def test_a_service_that_refuses_its_new_config_runs_on_the_old_one_again(mariadb_host):
    error, ctx, verbs = restart_on(mariadb_host, b"[mysqld]\nbad\n")
    cnf = mariadb_host[1]
    assert str(error).startswith(f"mariadb.service did not start with the new configuration, so {cnf} "
                                 "were put back and it runs on them again: ")
    assert state({"cnf": cnf})["cnf"] == ("file", b"[mysqld]\ngood\n", 0o644)
    assert verbs == ["show", "restart", "daemon-reload", "restart"]
    assert not ctx.pending(OWED)


def test_a_first_config_is_not_taken_back(mariadb_host):
    """Nothing was there before (the first run): going back would start MariaDB on the
    distribution's defaults, its data on the root filesystem. The error stands, the file stays."""
    error, ctx, verbs = restart_on(mariadb_host, b"[mysqld]\nbad\n", first=True)
    assert "Job for mariadb.service failed" in str(error) and "put back" not in str(error)
    assert open(mariadb_host[1], "rb").read() == b"[mysqld]\nbad\n"
    assert verbs == ["show", "restart"]


def test_a_config_it_accepts_is_kept(mariadb_host):
    unit_state, ctx, verbs = restart_on(mariadb_host, b"[mysqld]\nbetter\n")
    assert unit_state.running and not ctx.pending(OWED)
    assert open(mariadb_host[1], "rb").read() == b"[mysqld]\nbetter\n"
    assert verbs == ["show", "restart"]
