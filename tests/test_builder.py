"""The build account (deploy/builder.py): the argv and environment a virtualenv build runs with,
the seal that makes the result root's, and a real build on this machine (as an unused uid, no
systemd scope, offline) of a release that carries a `pip/` package and a local sdist whose
setup.py records its uid. The test host builds as the real bingo-build account
(tests/test_deploy.py, the last test).
"""

from __future__ import annotations

import hashlib
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


def test_the_build_environment_holds_proxies_and_uvs_index_settings_and_nothing_else_of_the_callers():
    caller = {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_ACCESS_KEY_ID": "AKIA", "PYTHONPATH": "/rel",
              "PYTHONSTARTUP": "/rel/x.py", "HOME": "/root", "PATH": "/root/bin:/usr/bin",
              "LD_PRELOAD": "/rel/x.so", "PIP_INDEX_URL": "https://idx/simple", "PROXY": "not one",
              "proxy_pass": "no", "UV_CACHE_DIR": "/root/.cache/uv", "UV_OFFLINE": "1",
              "UV_CONFIG_FILE": "/root/uv.toml", "UV_LINK_MODE": "copy", "UV_NO_CACHE": "1"}
    passed = {name: f"{name}-value" for name in (
        "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE",
        "UV_DEFAULT_INDEX", "UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS")}
    caller.update(passed)
    env = builder.environment(WHO, "/w/abc", caller)
    assert env == {"HOME": WHO.home, "USER": "bingo-build", "LOGNAME": "bingo-build",
                   "PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/w/abc/tmp", **passed}


UV = "/opt/bingo-host/venv/bin/uv"


def test_uv_builds_the_venv_offline_from_its_cache_with_hard_links_and_bytecode():
    assert virtualenvs.venv_argv(UV, "/r/uv-cache", "/usr/bin/python3", "/r/venvs/abc") == [
        UV, "venv", "--no-config", "--no-python-downloads", "--cache-dir", "/r/uv-cache", "--python",
        "/usr/bin/python3", "--quiet", "/r/venvs/abc"]
    common = [UV, "pip", "install", "--no-config", "--python", "/r/venvs/abc/bin/python",
              "--cache-dir", "/r/uv-cache", "--link-mode", "hardlink", "--compile-bytecode",
              "--system-certs", "--no-python-downloads", "--no-progress"]
    reqs = ["/w/app/requirements.txt", "/w/app/mysql-requirements.txt"]
    assert virtualenvs.install_argv(UV, "/r/uv-cache", "/r/venvs/abc", reqs, "/w/overrides.txt", True) == [
        *common, "--offline", "-r", reqs[0], "-r", reqs[1], "--override", "/w/overrides.txt"]
    assert virtualenvs.install_argv(UV, "/r/uv-cache", "/r/venvs/abc", reqs[:1], None, False) == [
        *common, "-r", reqs[0]]


def test_uv_is_bingo_hosts_own_beside_its_python(monkeypatch, tmp_path):
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(virtualenvs.sys, "executable", str(tmp_path / "bin" / "python"))
    with pytest.raises(DeployError, match=rf"^uv is not installed beside bingo-host \({tmp_path}/bin/uv\): "
                                          r"reinstall bingo-host \(uv is one of its dependencies\)$"):
        virtualenvs.uv_binary()
    (tmp_path / "bin" / "uv").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "uv").chmod(0o755)
    assert virtualenvs.uv_binary() == f"{tmp_path}/bin/uv"


def test_the_cache_key_covers_python_every_requirement_file_and_the_overrides(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask==2.2.5\n")
    (tmp_path / "mysql-requirements.txt").write_text("mysql==0.0.2\n")
    reqs = [str(tmp_path / "requirements.txt"), str(tmp_path / "mysql-requirements.txt")]
    key = virtualenvs.requirements_hash
    base = key(reqs, "3.11.2")
    # Without overrides the key is what it was before they existed: those virtualenvs are reused.
    before = hashlib.sha256(b"python 3.11.2\nrequirements.txt 13\nflask==2.2.5\n"
                            b"mysql-requirements.txt 13\nmysql==0.0.2\n").hexdigest()
    assert base == key(reqs, "3.11.2", ()) == before
    with_override = key(reqs, "3.11.2", ("mysql==0.0.3",))
    assert len({base, with_override, key(reqs, "3.11.2", ("mysql==0.0.4",)), key(reqs, "3.12.1"),
                key(reqs[:1], "3.11.2"), key(reqs, "3.11.2", ("mysql==0.0.3", "idna==3.7"))}) == 6
    (tmp_path / "mysql-requirements.txt").write_text("mysql==0.0.2\r\n")  # line endings are not a change
    assert key(reqs, "3.11.2", ("mysql==0.0.3",)) == with_override


def test_the_venv_build_argv(monkeypatch, tmp_path):
    """What ensure_venv runs, in order, from this host's facts: every command as the build
    account in the scope, in the scratch directory, never in the release; offline first, then
    online when the cache lacks something; the overrides in a file of the account's."""
    ran = []
    release = tmp_path / "rel"
    release.mkdir()
    (release / "requirements.txt").write_text("idna\n")
    (release / "mysql-requirements.txt").write_text("mysql==0.0.2\n")
    monkeypatch.setattr(layout, "BUILD_WORK", str(tmp_path / "work"))
    monkeypatch.setattr(builder, "account", lambda: builder.Account("b", 64001, 64001, "/h"))
    monkeypatch.setattr(builder, "stop", lambda who: None)
    monkeypatch.setattr(builder, "keep", lambda path, who: ran.append(("keep", path)))
    monkeypatch.setattr(builder, "seal", lambda top, owner: ran.append(("seal", top, owner)) or 1)
    monkeypatch.setattr(virtualenvs, "python_version", lambda python: "3.11.2")
    monkeypatch.setattr(virtualenvs, "uv_binary", lambda: UV)
    overrides_seen = []

    def run(argv, **kw):
        ran.append((list(argv), kw["cwd"], kw["inherit_env"], kw["env"]["HOME"]))
        if "--override" in argv:
            overrides_seen.append(Path(argv[argv.index("--override") + 1]).read_text())
        if "--offline" in argv:
            raise virtualenvs.CommandError(" ".join(argv), 1, "error: No solution found\n  cause: Because "
                                           "idna was not found in the cache and you require idna\n")
        return virtualenvs.subp.Result(tuple(argv), 0, "", "Resolved 2 packages in 1ms\n + idna==3.7\n")

    monkeypatch.setattr(virtualenvs.subp, "run", run)
    venvs, cache = str(tmp_path / "app" / "venvs"), str(tmp_path / "app" / "uv-cache")
    venv, digest, reused = virtualenvs.ensure_venv(venvs, cache, str(release), "/usr/bin/python3",
                                                   scope=SCOPE, overrides=("mysql==0.0.3",))
    assert digest == virtualenvs.requirements_hash(
        [str(release / "requirements.txt"), str(release / "mysql-requirements.txt")], "3.11.2", ("mysql==0.0.3",))
    work = f"{tmp_path}/work/{digest[:16]}"
    prefix = [*SCOPE, "setpriv", "--reuid=64001", "--regid=64001", "--clear-groups", "--no-new-privs", "--"]
    install = virtualenvs.install_argv(UV, cache, venv, [f"{work}/app/requirements.txt",
                                                         f"{work}/app/mysql-requirements.txt"],
                                       f"{work}/overrides.txt", offline=True)
    assert ran == [
        ("keep", cache),
        (prefix + virtualenvs.venv_argv(UV, cache, "/usr/bin/python3", venv), work, False, "/h"),
        (prefix + ["cp", "-R", "--no-dereference", str(release), f"{work}/app"], work, False, "/h"),
        (prefix + install, f"{work}/app", False, "/h"),
        (prefix + [a for a in install if a != "--offline"], f"{work}/app", False, "/h"),
        ("seal", venv, 64001),
    ]
    assert overrides_seen == ["mysql==0.0.3\n"] * 2
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


def test_the_workspace_gets_roots_inputs_as_the_accounts_files(tmp_path, monkeypatch):
    """What root hands the build (the overrides file) is written before the account owns the
    directory: no link the account could plant is followed."""
    if os.geteuid() != 0:
        pytest.skip("chowns to another uid")
    who = builder.Account("bingo-build-test", UNUSED_UID + 5, UNUSED_UID + 5, "/")
    monkeypatch.setattr(layout, "BUILD_WORK", str(tmp_path / "work"))
    with builder.workspace(who, "abc", {"overrides.txt": "mysql==0.0.3\n"}) as work:
        st = os.stat(f"{work}/overrides.txt")
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (who.uid, 0o600)
        assert Path(work, "overrides.txt").read_text() == "mysql==0.0.3\n"
    assert os.listdir(tmp_path / "work") == []


def test_the_uv_cache_is_the_accounts_alone_before_every_build(tmp_path):
    """Made 0700 the account's; closed again if a build opened it (the app user must never write
    what builds read); a link or file in its place is replaced, never followed; forget() removes
    it."""
    if os.geteuid() != 0:
        pytest.skip("chowns to another uid")
    who = builder.Account("bingo-build-test", UNUSED_UID + 6, UNUSED_UID + 6, "/")
    cache = tmp_path / "uv-cache"

    def owner_mode():
        st = cache.lstat()
        return st.st_uid, st.st_gid, stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode)

    builder.keep(str(cache), who)
    assert owner_mode() == (who.uid, who.gid, True, 0o700)
    (cache / "wheels").mkdir()
    cache.chmod(0o777)
    builder.keep(str(cache), who)
    assert owner_mode() == (who.uid, who.gid, True, 0o700) and os.listdir(cache) == ["wheels"]
    builder.forget(str(cache))
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    cache.symlink_to(tmp_path / "elsewhere")
    builder.keep(str(cache), who)
    assert owner_mode() == (who.uid, who.gid, True, 0o700)
    assert (tmp_path / "elsewhere").stat().st_uid == 0 and stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o755
    builder.forget(str(cache))
    assert not os.path.lexists(cache)


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
    assert builder.seal(str(top), 64002) == 7
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
    builder.seal(str(top), 64002)
    st = (outside / "secret").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (64003, 0o600)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755 and outside.stat().st_uid == 0  # as made


def _victim(tmp: Path, uid: int, mode: int) -> Path:
    (tmp / "victim").write_text("someone's\n")
    os.chown(tmp / "victim", uid, uid)
    os.chmod(tmp / "victim", mode)
    return tmp / "victim"


@pytest.mark.parametrize("plant, why", [
    (lambda top, tmp: os.link(_victim(tmp, 0, 0o600), top / "lib" / "hard"),
     "the virtualenv build left {top}/lib/hard with 2 hard links, a file that is not the build "
     "account's (it may be another's); refused"),
    (lambda top, tmp: os.link(_victim(tmp, 64003, 0o666), top / "lib" / "hard"),  # writable, not its own
     "the virtualenv build left {top}/lib/hard with 2 hard links, a file that is not the build "
     "account's (it may be another's); refused"),
    (lambda top, tmp: os.link(_victim(tmp, 0, 0o4755), top / "lib" / "hard"),
     "the virtualenv build left {top}/lib/hard with 2 hard links, a file that is not the build "
     "account's (it may be another's); refused"),
    (lambda top, tmp: os.mkfifo(top / "lib" / "fifo"),
     "the virtualenv build left {top}/lib/fifo, which is no file, directory or link; refused"),
])
def test_seal_refuses_others_hard_linked_files_and_special_files(tmp_path, plant, why):
    import re

    top = tree(tmp_path, 64002)
    plant(top, tmp_path)
    before = (tmp_path / "victim").stat() if (tmp_path / "victim").exists() else None
    with pytest.raises(DeployError, match=f"^{re.escape(why.format(top=top))}$"):
        builder.seal(str(top), 64002)
    if before:
        after = (tmp_path / "victim").stat()
        assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)


def test_a_file_hard_linked_from_the_accounts_cache_is_sealed_for_both_names():
    """uv links its cache's files (the account's) into the virtualenv. Sealed, the inode is
    root's and read-only: through its cache name the account can neither write it, chmod it nor
    link it again (protected_hardlinks); unlinking that name leaves the virtualenv's. A file
    already sealed (another virtualenv's, root:root 0644) stays as it is."""
    if os.geteuid() != 0:
        pytest.skip("acts as another uid")
    uid = UNUSED_UID + 7
    top = Path(tempfile.mkdtemp(prefix="bingo-seal-"))
    try:
        top.chmod(0o755)
        cache, venv = top / "cache", tree(top, uid)
        cache.mkdir()
        (cache / "mod.py").write_text("x = 1\n")
        (cache / "sealed.py").write_text("y = 2\n")
        os.chmod(cache / "sealed.py", 0o644)  # root's, as an earlier seal left it
        os.chown(cache, uid, uid)
        os.chown(cache / "mod.py", uid, uid)
        os.link(cache / "mod.py", venv / "lib" / "site" / "linked.py")
        os.link(cache / "sealed.py", venv / "lib" / "site" / "sealed.py")
        os.link(cache / "mod.py", venv / "lib" / "site" / "twice.py")  # a second name in the venv
        assert builder.seal(str(venv), uid) == 10
        for name in ("mod.py", "sealed.py"):
            st = (cache / name).stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644), name

        def as_account(script: str) -> int:
            return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                   "sh", "-c", script], cwd=cache, capture_output=True).returncode

        assert as_account("echo 'x = 666' >> mod.py") != 0
        assert as_account("chmod 666 mod.py") != 0
        assert as_account("ln mod.py again.py") != 0
        assert as_account("rm -f mod.py") == 0  # its own name only
        assert (venv / "lib" / "site" / "linked.py").read_text() == "x = 1\n"
    finally:
        shutil.rmtree(top)


# -- a real build, on this machine --

UNUSED_UID = 64123  # no account, no process: stop() may kill whatever runs as it


WHEELS = Path("/usr/share/python-wheels")  # Debian's setuptools wheel (python3-venv): builds offline


@pytest.fixture
def world(monkeypatch):
    """A world-readable directory (the build account must reach the release and the venvs)."""
    if os.geteuid() != 0:
        pytest.skip("the build drops from root to the build account")
    if not Path("/usr/bin/python3").exists() or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs /usr/bin/python3 and setpriv")
    if not list(WHEELS.glob("setuptools-*.whl")):
        pytest.skip(f"needs a setuptools wheel in {WHEELS} (python3-venv) to build offline")
    top = Path(tempfile.mkdtemp(prefix="bingo-builder-"))
    top.chmod(0o755)
    who = builder.Account("bingo-build-test", UNUSED_UID, UNUSED_UID, str(top / "home"))
    (top / "home").mkdir()
    os.chown(top / "home", UNUSED_UID, UNUSED_UID)
    monkeypatch.setattr(layout, "BUILD_WORK", str(top / "work"))
    monkeypatch.setattr(builder, "account", lambda: who)
    for name in [n for n in os.environ if n.startswith(("UV_", "PIP_"))]:
        monkeypatch.delenv(name)
    # The build's own setuptools from a local directory: the offline run needs no index.
    monkeypatch.setenv("UV_FIND_LINKS", str(WHEELS))
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
    """uv (this checkout's pinned copy) as the build account, offline: the revision's setup.py
    runs as the account only, no module the release shadows runs, the venv is hard-linked from
    the account's cache, compiled, then every entry root's and read-only to others."""
    release = world / "rel"
    (release / "vendor").mkdir(parents=True)
    (release / "pip").mkdir()
    (world / "marks").mkdir()  # world-writable: a write as root and one as the build uid both land
    (world / "marks").chmod(0o777)
    shadow = world / "marks" / "shadow-ran"
    (release / "pip" / "__init__.py").write_text(
        f"open({str(shadow)!r}, 'a').write(str(__import__('os').getuid()) + '\\n')\n")
    # What the build may import by name, in the working directory (the release's copy).
    for shadowed in ("ensurepip", "venv", "setuptools", "compileall", "py_compile"):
        (release / shadowed).mkdir()
        (release / shadowed / "__init__.py").write_text((release / "pip" / "__init__.py").read_text())
    record = world / "marks" / "setup-py-uid"
    recorder_sdist(release / "vendor" / "recorder-1.0.tar.gz", str(record))
    (release / "requirements.txt").write_text("./vendor/recorder-1.0.tar.gz\n")
    (release / "sitecustomize.py").write_text((release / "pip" / "__init__.py").read_text())
    release_build.normalise_tree(str(release))
    caplog.set_level(logging.INFO, logger="bingo_host")
    venvs, cache = str(world / "app" / "venvs"), str(world / "app" / "uv-cache")
    (world / "app").mkdir(mode=0o755)
    venv, digest, reused = virtualenvs.ensure_venv(venvs, cache, str(release), "/usr/bin/python3")
    assert not reused
    assert not shadow.exists(), shadow.read_text()  # the release's pip/, compileall/... never ran
    assert "installing online" not in caplog.text, caplog.text  # all from the cache and find-links
    runs = record.read_text().splitlines()
    assert runs and set(runs) == {f"{UNUSED_UID} {UNUSED_UID} [] False"}, runs  # no root, no groups
    # Every entry of the venv is root's and read-only to others; root marked it complete.
    linked = []
    for dirpath, dirnames, filenames in os.walk(venv):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            assert st.st_uid == 0 and st.st_gid == 0, name
            assert stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o022, name
            linked += [name] if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 else []
    assert linked, "uv linked nothing from its cache"  # the cache's names are those inodes: root's
    assert list(Path(venv).glob("lib/python3*/site-packages/__pycache__/recorder.cpython-*.pyc"))
    assert Path(venv, virtualenvs.VENV_COMPLETE).read_text() == digest + "\n"
    assert "virtualenv: uv pip install -r requirements.txt" in caplog.text, caplog.text
    assert " + recorder==1.0" in caplog.text, caplog.text
    # Its scratch directory is gone, its cache stays its own and closed, nothing of it runs.
    st = os.stat(cache)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (UNUSED_UID, 0o700)
    assert os.listdir(layout.BUILD_WORK) == []
    assert builder.processes(UNUSED_UID) == []
    again = virtualenvs.ensure_venv(venvs, cache, str(release), "/usr/bin/python3")
    assert again == (venv, digest, True) and record.read_text().splitlines() == runs


def test_the_releases_own_modules_are_compiled_without_running_them(tmp_path, caplog):
    """compileall as root parses the release and writes bytecode for each module; nothing of the
    release runs (the module that would leave a mark at import leaves none), and a module that
    does not compile is left to Python at import, with a warning."""
    import sys

    release = tmp_path / "rel"
    (release / "musicbingo").mkdir(parents=True)
    mark = tmp_path / "ran"
    (release / "application.py").write_text(f"open({str(mark)!r}, 'w').close()\napp = None\n")
    (release / "musicbingo" / "__init__.py").write_text("")
    (release / "musicbingo" / "broken.py").write_text("def (:\n")
    caplog.set_level(logging.INFO, logger="bingo_host")
    release_build.compile_bytecode(str(release), sys.executable)
    tag = sys.implementation.cache_tag
    assert (release / "__pycache__" / f"application.{tag}.pyc").is_file()
    assert (release / "musicbingo" / "__pycache__" / f"__init__.{tag}.pyc").is_file()
    assert not mark.exists()
    assert "release: some modules did not compile" in caplog.text and "broken.py" in caplog.text


def test_a_failed_install_says_what_uv_said_first_and_last():
    exc = virtualenvs.CommandError("uv pip install ...", 1, (
        "Using Python 3.11.2 environment at: /r/venvs/abc\n"
        "  × Failed to build `mysql==0.0.2`\n  ├─▶ The build backend returned an error\n"
        "      AttributeError: 'list' object has no attribute 'splitlines'\n\n"
        "      hint: This usually indicates a problem with the package or the build environment.\n"
        "  help: `mysql` (v0.0.2) was included because `mysql-requirements.txt` depends on `mysql==0.0.2`\n"))
    assert str(virtualenvs.failed(exc)) == (
        "uv pip install failed (exit 1): × Failed to build `mysql==0.0.2`\n"
        "  ├─▶ The build backend returned an error\n"
        "  AttributeError: 'list' object has no attribute 'splitlines'\n"
        "  hint: This usually indicates a problem with the package or the build environment.\n"
        "  help: `mysql` (v0.0.2) was included because `mysql-requirements.txt` depends on `mysql==0.0.2`")
