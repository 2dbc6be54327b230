"""The build account (deploy/builder.py): the argv and environment a virtualenv build runs with,
the seal that makes the result root's, and a real build on this machine (as an unused uid, no
systemd scope, offline) of a release that carries a `pip/` package and a local sdist whose
setup.py records its uid. The test host builds as the real bingo-build account
(tests/test_deploy.py, the last test).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bingo_host import layout
from bingo_host.deploy import DeployError, builder, release_build, virtualenvs
from tests.deploying import recorder_sdist

WHO = builder.Account("bingo-build", 991, 992, "/var/lib/bingo-host/build")
SCOPE = ["systemd-run", "--scope", "--"]


def test_each_build_command_runs_as_the_build_account_without_root_groups_or_new_privileges():
    argv = builder.command(WHO, ["/usr/bin/python3", "-I", "-m", "venv", "/v"], SCOPE)
    assert argv == [*SCOPE, "setpriv", "--reuid=991", "--regid=992", "--clear-groups",
                    "--no-new-privs", "--", "/usr/bin/python3", "-I", "-m", "venv", "/v"]
    assert builder.command(WHO, ["true"]) == argv[len(SCOPE):-5] + ["true"]


def test_the_build_environment_holds_pip_settings_and_nothing_else_of_the_callers():
    caller = {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_ACCESS_KEY_ID": "AKIA", "PYTHONPATH": "/rel",
              "PYTHONSTARTUP": "/rel/x.py", "HOME": "/root", "PATH": "/root/bin:/usr/bin",
              "LD_PRELOAD": "/rel/x.so", "PIP_INDEX_URL": "https://idx/simple",
              "PIP_CONFIG_FILE": "/root/pip.conf", "PROXY": "not one", "proxy_pass": "no"}
    proxies = {name: f"{name}-value" for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY",
                                                   "HTTPS_PROXY", "NO_PROXY")}
    caller.update(proxies)
    env = builder.environment(WHO, "/w/abc", caller)
    assert env == {"HOME": WHO.home, "USER": "bingo-build", "LOGNAME": "bingo-build",
                   "PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/w/abc/tmp", "PIP_INDEX_URL": "https://idx/simple",
                   "PIP_CONFIG_FILE": "/w/abc/pip.conf", **proxies}
    assert builder.environment(WHO, "/w", {"PIP_CONFIG_FILE": os.devnull})["PIP_CONFIG_FILE"] == os.devnull


def test_the_venv_build_argv(monkeypatch, tmp_path):
    """What ensure_venv runs, in order, from this host's facts: every command as the build
    account in the scope, python isolated, in the scratch directory, never in the release."""
    ran = []
    release = tmp_path / "rel"
    release.mkdir()
    (release / "requirements.txt").write_text("idna\n")
    (release / "mysql-requirements.txt").write_text("mysqlclient\n")
    monkeypatch.setattr(layout, "BUILD_WORK", str(tmp_path / "work"))
    monkeypatch.setattr(builder, "account", lambda: builder.Account("b", 64001, 64001, "/h"))
    monkeypatch.setattr(builder, "stop", lambda who: None)
    monkeypatch.setattr(builder, "seal", lambda top: 1)
    monkeypatch.setattr(virtualenvs, "python_version", lambda python: "3.11.2")

    def run(argv, **kw):
        ran.append((list(argv), kw["cwd"], kw["inherit_env"], kw["env"]["HOME"]))
        return virtualenvs.subp.Result(tuple(argv), 0, "", "")

    monkeypatch.setattr(virtualenvs.subp, "run", run)
    monkeypatch.setattr(virtualenvs.files, "write_atomic", lambda *a, **k: None)
    venv, digest, reused = virtualenvs.ensure_venv(str(tmp_path / "app" / "venvs"), str(release),
                                                   "/usr/bin/python3", scope=SCOPE)
    work = f"{tmp_path}/work/{digest[:16]}"
    prefix = [*SCOPE, "setpriv", "--reuid=64001", "--regid=64001", "--clear-groups", "--no-new-privs", "--"]
    assert ran == [
        (prefix + ["/usr/bin/python3", "-I", "-m", "venv", venv], work, False, "/h"),
        (prefix + ["cp", "-R", "--no-dereference", str(release), f"{work}/app"], work, False, "/h"),
        (prefix + [f"{venv}/bin/python", "-I", "-m", "pip", "--disable-pip-version-check", "--no-input",
                   "install", "--cache-dir", layout.BUILD_PIP_CACHE, "--progress-bar", "off",
                   "-r", f"{work}/app/requirements.txt", "-r", f"{work}/app/mysql-requirements.txt"],
         f"{work}/app", False, "/h"),
    ]
    assert not reused and not os.path.exists(work)


@pytest.mark.parametrize("line", ["-e .", "  --editable=./pkg", "-e git+https://x/y.git#egg=y"])
def test_editable_requirements_are_refused_naming_the_line(tmp_path, line):
    (tmp_path / "requirements.txt").write_text(f"idna\n{line}\n")
    with pytest.raises(DeployError, match=r"^requirements.txt line 2: editable requirements"):
        virtualenvs.refuse_editable([str(tmp_path / "requirements.txt")])
    (tmp_path / "requirements.txt").write_text("idna  # -e . is not supported\n./pkg\n")
    virtualenvs.refuse_editable([str(tmp_path / "requirements.txt")])


# -- the account, as the app step makes it --

def test_a_missing_or_privileged_build_account_stops_the_build():
    with pytest.raises(DeployError, match=r"^the build account bingo-no-such-account does not exist: run "
                                          r"`bingo-host bootstrap` \(it creates it\)$"):
        builder.account("bingo-no-such-account")
    with pytest.raises(DeployError, match="root has uid or gid 0"):
        builder.account("root")
    nobody = builder.account("nobody")
    assert (nobody.name, nobody.uid) == ("nobody", 65534)


@pytest.mark.parametrize("uid, gid", [(0, 990), (990, 0)])
def test_a_build_account_with_uid_or_gid_0_is_refused(monkeypatch, uid, gid):
    import pwd

    entry = pwd.struct_passwd(("bingo-build", "x", uid, gid, "", "/var/lib/bingo-host/build", "/usr/sbin/nologin"))
    monkeypatch.setattr(builder.pwd, "getpwnam", lambda name: entry)
    with pytest.raises(DeployError, match="bingo-build has uid or gid 0"):
        builder.account()


def as_uid(uid: int, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv])


def _state(pid: int) -> str:
    """The process's state letter from /proc/<pid>/stat (R, S, Z...)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_stop_ends_every_process_of_the_build_account_and_nothing_else():
    """Its processes, a daemon one of them started among them, end; another uid's do not; a
    zombie (it holds nothing, its parent reaps it) is not waited for."""
    if os.geteuid() != 0:
        pytest.skip("starts processes as other uids")
    who = builder.Account("bingo-build-test", UNUSED_UID + 1, UNUSED_UID + 1, "/")
    other = as_uid(UNUSED_UID + 2, "sleep", "60")
    mine = [as_uid(who.uid, "sleep", "60"), as_uid(who.uid, "sh", "-c", "sleep 60 & wait")]
    zombie = as_uid(who.uid, "true")
    try:
        deadline = time.monotonic() + 10
        while _state(zombie.pid) != "Z" and time.monotonic() < deadline:  # `true` has exited, unreaped
            time.sleep(0.05)
        while len(builder.processes(who.uid)) != 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(builder.processes(who.uid)) == 3  # sleep, sh and its sleep; not the zombie
        assert zombie.pid not in builder.processes(who.uid)
        assert builder.processes(UNUSED_UID + 2) == [other.pid]
        builder.stop(who)
        assert builder.processes(who.uid) == [] and [p.wait(5) for p in mine] == [-9, -9]
        assert other.poll() is None
    finally:
        for p in (other, *mine, zombie):
            p.kill()
            p.wait()


def test_processes_that_outlast_the_stop_fail_the_build_naming_them():
    if os.geteuid() != 0:
        pytest.skip("starts a process as another uid")
    who = builder.Account("bingo-build-test", UNUSED_UID + 4, UNUSED_UID + 4, "/")
    proc = as_uid(who.uid, "sleep", "60")
    try:
        deadline = time.monotonic() + 10
        while builder.processes(who.uid) != [proc.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(DeployError, match=rf"^processes of the build account bingo-build-test "
                                              rf"outlived the build and could not be stopped: {proc.pid}$"):
            builder.stop(who, timeout=0)
    finally:
        proc.kill()
        proc.wait()


def test_the_callers_pip_config_is_copied_for_the_build_or_the_build_is_refused(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("chowns to another uid")
    who = builder.Account("bingo-build-test", UNUSED_UID + 5, UNUSED_UID + 5, "/")
    monkeypatch.setattr(layout, "BUILD_WORK", str(tmp_path / "work"))
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ntimeout = 5\n")
    conf.chmod(0o600)
    with builder.workspace(who, "abc", {"PIP_CONFIG_FILE": str(conf)}) as work:
        st = os.stat(f"{work}/pip.conf")
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (who.uid, 0o600)
        assert Path(work, "pip.conf").read_text() == conf.read_text()
    for bad, why in ((tmp_path, "not a regular file"), (tmp_path / "none", "no such file")):
        with pytest.raises(DeployError, match=rf"^PIP_CONFIG_FILE {bad}: {why}$"):
            with builder.workspace(who, "abc", {"PIP_CONFIG_FILE": str(bad)}):
                pass
        assert os.listdir(tmp_path / "work") == []


def test_the_workspace_is_fresh_and_nothing_of_the_account_runs_while_root_prepares_it(tmp_path, monkeypatch):
    """A killed build's leftovers (its scratch directory, a process still running) are gone
    before root makes the new directory, and again afterwards."""
    if os.geteuid() != 0:
        pytest.skip("starts a process as another uid")
    who = builder.Account("bingo-build-test", UNUSED_UID + 3, UNUSED_UID + 3, "/")
    monkeypatch.setattr(layout, "BUILD_WORK", str(tmp_path / "work"))
    (tmp_path / "work" / "abc" / "app").mkdir(parents=True)
    (tmp_path / "work" / "abc" / "app" / "left").write_text("over")
    leftover = as_uid(who.uid, "sleep", "60")
    try:
        deadline = time.monotonic() + 10
        while builder.processes(who.uid) != [leftover.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        with builder.workspace(who, "abc", {}) as work:
            assert builder.processes(who.uid) == [] and leftover.wait(5) == -9
            assert sorted(os.listdir(work)) == ["tmp"]
            for path in (work, f"{work}/tmp"):
                st = os.stat(path)
                assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (who.uid, who.gid, 0o700)
            straggler = as_uid(who.uid, "sleep", "60")
            deadline = time.monotonic() + 10  # setpriv has become the account before root looks
            while builder.processes(who.uid) != [straggler.pid] and time.monotonic() < deadline:
                time.sleep(0.05)
        assert straggler.wait(5) == -9 and not os.path.exists(work)
        # A link left where the directory goes is removed, not followed.
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "kept").write_text("x")
        (tmp_path / "work" / "abc").symlink_to(tmp_path / "elsewhere")
        with builder.workspace(who, "abc", {}) as work:
            assert not os.path.islink(work) and sorted(os.listdir(work)) == ["tmp"]
        assert os.listdir(tmp_path / "elsewhere") == ["kept"]
    finally:
        leftover.kill()
        leftover.wait()


# -- the seal --

def tree(tmp_path: Path, uid: int) -> Path:
    top = tmp_path / "venv"
    (top / "bin").mkdir(parents=True)
    (top / "lib" / "site").mkdir(parents=True)
    (top / "bin" / "tool").write_text("#!/bin/sh\n")
    (top / "bin" / "tool").chmod(0o4777)
    (top / "lib" / "site" / "mod.py").write_text("x = 1\n")
    (top / "lib" / "site" / "mod.py").chmod(0o666)
    (top / "lib" / "site").chmod(0o777)
    (top / "bin" / "python").symlink_to("/usr/bin/python3")
    for path in [top, *top.rglob("*")]:
        os.lchown(path, uid, uid)
    return top


def test_seal_makes_every_entry_roots_and_read_only_to_others(tmp_path):
    top = tree(tmp_path, 64002)
    assert builder.seal(str(top)) == 7
    modes = {str(p.relative_to(top)): (p.lstat().st_uid, p.lstat().st_gid, stat.S_IMODE(p.lstat().st_mode))
             for p in top.rglob("*") if not p.is_symlink()}
    assert modes == {"bin": (0, 0, 0o755), "lib": (0, 0, 0o755), "lib/site": (0, 0, 0o755),
                     "bin/tool": (0, 0, 0o755), "lib/site/mod.py": (0, 0, 0o644)}
    assert (top / "bin" / "python").lstat().st_uid == 0 and os.readlink(top / "bin" / "python") == "/usr/bin/python3"


def test_seal_never_follows_a_link_it_was_left(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    os.chmod(outside / "secret", 0o600)
    os.chown(outside / "secret", 64003, 64003)
    top = tree(tmp_path, 64002)
    (top / "lib" / "dir-link").symlink_to(outside)
    (top / "lib" / "file-link").symlink_to(outside / "secret")
    builder.seal(str(top))
    st = (outside / "secret").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (64003, 0o600)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755 and outside.stat().st_uid == 0  # as made


@pytest.mark.parametrize("plant, why", [
    (lambda top, tmp: os.link(tmp / "victim", top / "lib" / "hard"),
     "the virtualenv build left {top}/lib/hard with 2 hard links (it may be another file's); refused"),
    (lambda top, tmp: os.mkfifo(top / "lib" / "fifo"),
     "the virtualenv build left {top}/lib/fifo, which is no file, directory or link; refused"),
])
def test_seal_refuses_hard_links_and_special_files(tmp_path, plant, why):
    import re

    (tmp_path / "victim").write_text("root's\n")
    os.chmod(tmp_path / "victim", 0o600)
    top = tree(tmp_path, 64002)
    plant(top, tmp_path)
    with pytest.raises(DeployError, match=f"^{re.escape(why.format(top=top))}$"):
        builder.seal(str(top))
    assert stat.S_IMODE((tmp_path / "victim").stat().st_mode) == 0o600


# -- a real build, on this machine --

UNUSED_UID = 64123  # no account, no process: stop() may kill whatever runs as it


@pytest.fixture
def world(monkeypatch):
    """A world-readable directory (the build account must reach the release and the venvs)."""
    if os.geteuid() != 0:
        pytest.skip("the build drops from root to the build account")
    if not Path("/usr/bin/python3").exists() or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs /usr/bin/python3 and setpriv")
    top = Path(tempfile.mkdtemp(prefix="bingo-builder-"))
    top.chmod(0o755)
    who = builder.Account("bingo-build-test", UNUSED_UID, UNUSED_UID, str(top / "home"))
    (top / "home").mkdir()
    os.chown(top / "home", UNUSED_UID, UNUSED_UID)
    monkeypatch.setattr(layout, "BUILD_WORK", str(top / "work"))
    monkeypatch.setattr(layout, "BUILD_PIP_CACHE", str(top / "home" / "pip-cache"))
    monkeypatch.setattr(builder, "account", lambda: who)
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: the venv's own setuptools builds the sdist
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-seen-by-the-build")
    groups = os.getgroups()
    os.setgroups([0, 4])  # root's supplementary groups, as a login shell has them: never the build's
    try:
        yield top
    finally:
        os.setgroups(groups)
        builder.stop(who)
        shutil.rmtree(top, ignore_errors=True)


def test_a_real_build_runs_as_the_build_account_and_leaves_a_sealed_venv(world, caplog):
    release = world / "rel"
    (release / "vendor").mkdir(parents=True)
    (release / "pip").mkdir()
    (world / "marks").mkdir()  # world-writable: a write as root and one as the build uid both land
    (world / "marks").chmod(0o777)
    shadow = world / "marks" / "shadow-pip-ran"
    (release / "pip" / "__init__.py").write_text(
        f"open({str(shadow)!r}, 'a').write(str(__import__('os').getuid()) + '\\n')\n")
    for shadowed in ("ensurepip", "venv", "setuptools"):  # what the build imports by name
        (release / shadowed).mkdir()
        (release / shadowed / "__init__.py").write_text((release / "pip" / "__init__.py").read_text())
    record = world / "marks" / "setup-py-uid"
    recorder_sdist(release / "vendor" / "recorder-1.0.tar.gz", str(record))
    (release / "requirements.txt").write_text("./vendor/recorder-1.0.tar.gz\n")
    (release / "sitecustomize.py").write_text((release / "pip" / "__init__.py").read_text())
    release_build.normalise_tree(str(release))
    # The caller's pip config, where only root can read it: the build reads its copy.
    (world / "root-only").mkdir(mode=0o700)
    report = world / "marks" / "pip-report.json"
    (world / "root-only" / "pip.conf").write_text(f"[install]\nreport = {report}\n")
    os.chmod(world / "root-only" / "pip.conf", 0o600)
    os.environ["PIP_CONFIG_FILE"] = str(world / "root-only" / "pip.conf")  # the fixture restores
    caplog.set_level(logging.INFO, logger="bingo_host")
    venv, digest, reused = virtualenvs.ensure_venv(str(world / "app" / "venvs"), str(release),
                                                   "/usr/bin/python3")
    assert not reused
    assert not shadow.exists(), shadow.read_text()  # the release's pip/, ensurepip/ never ran
    runs = record.read_text().splitlines()  # setup.py runs for its metadata, then its wheel
    assert runs and set(runs) == {f"{UNUSED_UID} {UNUSED_UID} [] False"}, runs  # no root, no groups
    # Every entry of the venv is root's and read-only to others; root marked it complete.
    for dirpath, dirnames, filenames in os.walk(venv):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            assert st.st_uid == 0 and st.st_gid == 0, name
            assert stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o022, name
    assert Path(venv, virtualenvs.VENV_COMPLETE).read_text() == digest + "\n"
    assert report.stat().st_uid == UNUSED_UID and '"recorder"' in report.read_text()
    assert "recorder" in caplog.text, caplog.text
    # Its scratch directory is gone, its pip cache stays its own, nothing of it runs.
    assert os.listdir(layout.BUILD_WORK) == []
    assert builder.processes(UNUSED_UID) == []
    again = virtualenvs.ensure_venv(str(world / "app" / "venvs"), str(release), "/usr/bin/python3")
    assert again == (venv, digest, True) and record.read_text().splitlines() == runs
