"""`bingo-host deploy` against the CodeDeploy agent's behaviour, run on this machine (no test host).

Probe revisions (a tiny appspec whose hooks record their environment, working directory, process
group, stdin and path) go through lifecycle.deploy with the agent's config pointed at a tmp root
(agent.CONFIG monkeypatched), so nothing lands in /opt/codedeploy-agent, /var/lib/bingo-host or
/var/www: every appspec destination is under tmp too. What each test checks comes from the agent's
source (lib/instance_agent/plugins/codedeploy/{hook_executor,command_executor,installer,
install_instruction}.rb, lib/instance_agent/platform/linux_util.rb).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from bingo_host.deploy import BundleError, DeployError, agent, appspec, installer, lifecycle, record
from bingo_host.deploy.archive import extract

GROUP = lifecycle.DEFAULT_GROUP_ID
AGENT_VARS = {"LIFECYCLE_EVENT", "DEPLOYMENT_ID", "APPLICATION_NAME", "DEPLOYMENT_GROUP_NAME",
              "DEPLOYMENT_GROUP_ID"}
SHELL_VARS = {"PWD", "SHLVL", "_", "OLDPWD"}  # what sh itself sets
REAL_PATHS = ("/opt/codedeploy-agent", "/etc/codedeploy-agent", "/var/lib/bingo-host",
              "/var/www/music-bingo")

PROBE = """\
d="{out}/$LIFECYCLE_EVENT-{marker}"
mkdir -p "$d"
env > "$d/env"
pwd > "$d/pwd"
ps -o pgid= -p $$ | tr -d ' ' > "$d/pgid"
echo $$ > "$d/pid"
readlink -f "$0" > "$d/script"
readlink /proc/$$/fd/0 > "$d/stdin"
echo "probe {marker} on stdout"
echo "probe {marker} on stderr" >&2
"""


def _snapshot():
    out = {}
    for p in REAL_PATHS:
        try:
            out[p] = os.stat(p).st_mtime_ns
        except FileNotFoundError:
            out[p] = None
    return out


@pytest.fixture(autouse=True)
def real_paths_untouched():
    before = _snapshot()
    yield
    assert _snapshot() == before


@pytest.fixture
def host(tmp_path, monkeypatch, caplog):
    """The agent's config and bingo-host's state redirected under tmp; cwd a tmp directory;
    `lines`: what bingo-host logged."""
    caplog.set_level(logging.INFO, logger="bingo_host")
    root = tmp_path / "agent-root"
    conf = tmp_path / "codedeployagent.yml"
    conf.write_text(f":root_dir: '{root}'\n:max_revisions: 5\n")
    monkeypatch.setattr(agent, "CONFIG", str(conf))
    monkeypatch.setattr(agent, "DEFAULT_ROOT_DIR", str(tmp_path / "default-root-must-not-be-used"))
    monkeypatch.setattr(record, "STATE_FILE", str(tmp_path / "deploy.json"))
    cwd = tmp_path / "driver-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    out.mkdir()

    class Host:
        @property
        def lines(self):
            return [r.getMessage() for r in caplog.records]

    h = Host()
    h.tmp, h.root, h.conf, h.cwd, h.out = tmp_path, root, conf, cwd, out
    h.deployment_dir = lambda did, group=GROUP: root / group / did
    return h


def revision(path: Path, hooks=None, files=(), payload=None, extra_yaml="") -> Path:
    """A revision directory: hooks {event: [(name, body, {timeout/runas})]}, files [(src, dest)]."""
    path.mkdir(parents=True)
    (path / "hooks").mkdir()
    lines = ["version: 0.0", "os: linux"]
    if files:
        lines.append("files:")
        lines += [f"  - source: {s}\n    destination: {d}" for s, d in files]
    if hooks:
        lines.append("hooks:")
        for event, scripts in hooks.items():
            lines.append(f"  {event}:")
            for name, body, opts in scripts:
                script = path / "hooks" / name
                script.write_text("#!/bin/sh\n" + body)
                script.chmod(0o755)
                lines.append(f"    - location: hooks/{name}")
                lines += [f"      {k}: {v}" for k, v in opts.items()]
    for rel, content in (payload or {}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    (path / "appspec.yml").write_text("\n".join(lines) + "\n" + extra_yaml)
    return path


def pack(rev: Path, fmt: str) -> Path:
    """The revision as the real tools pack it, under a name that does not say its format."""
    if fmt == "dir":
        return rev
    out = rev.parent / f"{rev.name}-{fmt}.bin"
    if fmt == "zip":
        subprocess.run(["zip", "-qr", str(out), "."], cwd=rev, check=True)
    else:
        subprocess.run(["tar", "czf", str(out), "-C", str(rev), "."], check=True)
    return out


def probe_hooks(out: Path, marker: str, events=("BeforeInstall", "AfterInstall", "ApplicationStart",
                                                "ValidateService")):
    return {e: [("probe.sh", PROBE.format(out=out, marker=marker), {"timeout": 30})] for e in events}


def read_env(path: Path) -> dict:
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


# -- the hook environment, process and layout --

@pytest.mark.parametrize("fmt", ["zip", "tgz", "dir"])
def test_hooks_run_like_the_agent_runs_them(host, fmt, monkeypatch):
    monkeypatch.setenv("PROBE_INHERITED", "yes")
    monkeypatch.setenv("BINGO_HOST_BUNDLE_DIR", "/stale/from/the/caller")
    www = host.tmp / "www"
    rev = revision(host.tmp / "rev", probe_hooks(host.out, "A"), files=[("payload", str(www / "app"))],
                   payload={"payload/index.html": "hello\n"})
    bundle = pack(rev, fmt)
    did = "d-PROBE0001"

    assert lifecycle.deploy(str(bundle), did) == did

    ddir = host.deployment_dir(did)
    archive = ddir / "deployment-archive"
    assert (archive / "appspec.yml").is_file() and os.access(archive / "hooks/probe.sh", os.X_OK)
    assert not (ddir / lifecycle.UNPACK_DIR).exists()
    if fmt == "dir":
        assert not (ddir / "bundle.tar").exists()
    else:
        assert os.readlink(ddir / "bundle.tar") == str(bundle)  # handle_local_file's symlink
    instructions = host.root / "deployment-instructions"
    assert (instructions / f"{GROUP}_most_recent_install").read_text() == str(ddir)
    assert (instructions / f"{GROUP}_last_successful_install").read_text() == str(ddir)
    assert (www / "app" / "index.html").read_text() == "hello\n"

    driver_env = set(os.environ)
    for event in ("BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"):
        d = host.out / f"{event}-A"
        env = read_env(d / "env")
        extras = {"BINGO_HOST_DEPLOY_DRIVER_PID", "BINGO_HOST_BUNDLE"}
        if fmt != "dir":
            extras.add("BINGO_HOST_BUNDLE_SHA256")
        assert set(env) - driver_env - SHELL_VARS == AGENT_VARS | extras
        assert "BINGO_HOST_BUNDLE_DIR" not in env
        assert env["PROBE_INHERITED"] == "yes"
        assert (env["LIFECYCLE_EVENT"], env["DEPLOYMENT_ID"], env["APPLICATION_NAME"],
                env["DEPLOYMENT_GROUP_NAME"], env["DEPLOYMENT_GROUP_ID"]) == (
            event, did, "music-bingo", "LocalFleet", "default-local-deployment-group")
        assert env["BINGO_HOST_DEPLOY_DRIVER_PID"] == str(os.getpid())
        assert env["BINGO_HOST_BUNDLE"] == str(bundle)
        if fmt != "dir":
            import hashlib

            assert env["BINGO_HOST_BUNDLE_SHA256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
        # The agent does not chdir: the driver's working directory.
        assert (d / "pwd").read_text().strip() == str(host.cwd)
        # pgroup: true -> the script leads its own process group.
        pgid, pid = int((d / "pgid").read_text()), int((d / "pid").read_text())
        assert pgid == pid and pgid != os.getpgrp()
        assert (d / "script").read_text().strip() == str(archive / "hooks" / "probe.sh")
        assert (d / "stdin").read_text().startswith("pipe:")  # popen3's stdin, closed at once

    log = (ddir / "logs" / "scripts.log").read_text()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert re.search(f"^{stamp}LifecycleEvent - BeforeInstall$", log, re.M)
    assert re.search(f"^{stamp}Script - hooks/probe.sh$", log, re.M)
    assert re.search(f"^{stamp}\\[stdout\\]probe A on stdout$", log, re.M)
    assert re.search(f"^{stamp}\\[stderr\\]probe A on stderr$", log, re.M)
    assert "[ValidateService] probe A on stdout" in host.lines


def test_a_new_deployment_id_looks_like_the_agents(host):
    rev = revision(host.tmp / "rev")
    ids = {lifecycle.new_deployment_id() for _ in range(20)}
    assert all(re.fullmatch(r"d-[A-Z0-9]{9}", i) for i in ids) and len(ids) == 20
    did = lifecycle.deploy(str(rev))
    assert re.fullmatch(r"d-[A-Z0-9]{9}", did) and host.deployment_dir(did).is_dir()


def test_cli_deploy_uses_the_group_id_for_the_layout(host):
    from click.testing import CliRunner

    from bingo_host.cli import main

    rev = revision(host.tmp / "rev", probe_hooks(host.out, "C", events=("BeforeInstall",)))
    r = CliRunner().invoke(main, ["deploy", str(rev), "--deployment-id", "d-CLI000001",
                                  "--deployment-group", "blue", "--deployment-group-id", "grp-1"])
    assert r.exit_code == 0, r.output
    env = read_env(host.out / "BeforeInstall-C" / "env")
    assert (env["DEPLOYMENT_GROUP_NAME"], env["DEPLOYMENT_GROUP_ID"]) == ("blue", "grp-1")
    assert (host.root / "grp-1" / "d-CLI000001" / "deployment-archive" / "appspec.yml").is_file()
    r = CliRunner().invoke(main, ["deploy", str(rev), "--deployment-group-id", "../escape"])
    assert r.exit_code == 2 and "--deployment-group-id" in r.output


# -- timeouts and outputs left open --

def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def test_timeout_sends_sigterm_to_the_process_group(host):
    # Like the agent, the driver closes the script's pipes right after SIGTERM: the shell's own
    # notice about its killed job would kill it with SIGPIPE before its trap ran.
    body = f"""\
trap '' PIPE
echo $$ > "{host.out}/pgid"
( trap 'echo TERM > "{host.out}/child-term"; exit 0' TERM; while :; do sleep 0.2; done ) >/dev/null 2>&1 &
trap 'echo TERM > "{host.out}/leader-term"; exit 143' TERM
echo started
sleep 30 &
wait $!
echo "never reached" > "{host.out}/not-terminated"
"""
    rev = revision(host.tmp / "rev", {"BeforeInstall": [("slow.sh", body, {"timeout": 1})]})
    start = time.monotonic()
    with pytest.raises(DeployError) as info:
        lifecycle.deploy(str(pack(rev, "zip")), "d-TIMEOUT01")
    took = time.monotonic() - start
    assert "failed in BeforeInstall: Script at specified location: hooks/slow.sh failed to complete " \
           "in 1 seconds" in str(info.value)
    assert 0.9 < took < 10
    # SIGTERM (trappable, so not SIGKILL) reached the script and the child in its group; the
    # child may run its trap a moment after the script exited.
    pgid = int((host.out / "pgid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (group_members(pgid) or not (host.out / "child-term").exists()):
        time.sleep(0.05)
    left = group_members(pgid)
    for pid in left:  # only when this test fails: do not leave the probe's loop running
        os.kill(pid, 9)
    assert left == []  # nothing of the group is left
    assert (host.out / "leader-term").read_text() == "TERM\n"
    assert (host.out / "child-term").read_text() == "TERM\n"
    assert not (host.out / "not-terminated").exists()
    # The failed deployment never passed Install.
    assert not (host.root / "deployment-instructions" / f"{GROUP}_last_successful_install").exists()
    assert "[stdout]started" in (host.deployment_dir("d-TIMEOUT01") / "logs/scripts.log").read_text()


@pytest.mark.parametrize("held, redirect", [("STDOUT", ""), ("STDERR", ">/dev/null")])
def test_background_child_holding_an_output_fails_at_the_timeout(host, held, redirect):
    body = f"""\
sleep 30 {redirect} &
echo $! > "{host.out}/bg-pid"
echo "left a child behind"
exit 0
"""
    rev = revision(host.tmp / "rev", {"AfterInstall": [("held.sh", body, {"timeout": 1})]})
    start = time.monotonic()
    try:
        with pytest.raises(DeployError) as info:
            lifecycle.deploy(str(rev), "d-HELDOUT01")
        took = time.monotonic() - start
        assert str(info.value).endswith(
            f"failed in AfterInstall: Script at specified location: hooks/held.sh failed to close {held}")
        assert 0.9 < took < 10  # at the hook's timeout, not when the child exits (30 s)
        assert "[AfterInstall] left a child behind" in host.lines
        # Like the agent, the background process is not killed.
        assert psutil.Process(int((host.out / "bg-pid").read_text())).is_running()
    finally:
        bg = host.out / "bg-pid"
        if bg.exists():
            try:
                os.kill(int(bg.read_text()), 15)
            except ProcessLookupError:
                pass


def test_interrupted_driver_sends_sigterm_to_the_running_hooks_group(host):
    """Ctrl-C reaches only the driver (the hook has its own process group): the driver passes
    SIGTERM on to the hook's group before it stops."""
    import signal
    import sys

    body = f"""\
trap '' PIPE
trap 'echo TERM > "{host.out}/hook-term"; exit 143' TERM
echo $$ > "{host.out}/hook-pid"
sleep 30 &
wait $!
"""
    rev = revision(host.tmp / "rev", {"BeforeInstall": [("wait.sh", body, {"timeout": 60})]})
    driver = f"""\
import signal
from bingo_host.deploy import agent, lifecycle, record
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (may be inherited ignored)
agent.CONFIG = {str(host.conf)!r}
record.STATE_FILE = {str(host.tmp / "deploy.json")!r}
lifecycle.deploy({str(rev)!r}, "d-INTERRUPT")
"""
    repo = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, "-c", driver], cwd=host.cwd, env=dict(os.environ, PYTHONPATH=repo),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (host.out / "hook-pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert b"KeyboardInterrupt" in err, err
        deadline = time.monotonic() + 5
        while not (host.out / "hook-term").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (host.out / "hook-term").read_text() == "TERM\n", err
    finally:
        if proc.poll() is None:
            proc.kill()
        hook = host.out / "hook-pid"
        if hook.exists():
            for pid in group_members(int(hook.read_text())):
                os.kill(pid, 9)


def test_failing_script_runas_user_reports_exit_code_and_reason(host):
    body = f"""\
ps -o args= -p $PPID > "{host.out}/parent"
ps -o args= -p $(ps -o ppid= -p $PPID) >> "{host.out}/parent"
id -un > "{host.out}/user"
echo "bingo-host: error: the probe failed on purpose" >&2
exit 3
"""
    rev = revision(host.tmp / "rev", {"ApplicationStart": [("fail.sh", body, {"runas": "root"})]})
    with pytest.raises(DeployError) as info:
        lifecycle.deploy(str(rev), "d-RUNAS0001")
    assert str(info.value) == ("deployment d-RUNAS0001 failed in ApplicationStart: Script at specified "
                               "location: hooks/fail.sh run as user root failed with exit code 3: the "
                               "probe failed on purpose")
    script = host.deployment_dir("d-RUNAS0001") / "deployment-archive" / "hooks" / "fail.sh"
    ancestors = (host.out / "parent").read_text().splitlines()
    assert f"runuser -u root -- {script}" in ancestors  # no shell between (not `su -c`)
    assert (host.out / "user").read_text() == "root\n"
    # It failed after Install: that counts as the last successful install.
    assert (host.root / "deployment-instructions" / f"{GROUP}_last_successful_install").read_text() \
        == str(host.deployment_dir("d-RUNAS0001"))


@pytest.mark.parametrize("runas", [{}, {"runas": "root"}])
def test_hook_path_with_shell_metacharacters_is_no_command(host, runas):
    """No shell parses a hook's path: `a;touch X $(touch Y)` is one file name."""
    out = host.out
    name = "probe;touch INJECTED $(touch INJECTED2) `touch INJECTED3`.sh"
    rev = revision(host.tmp / "rev", {"ApplicationStart": [(name, f'id -un > "{out}/user"\n',
                                                             runas)]})
    lifecycle.deploy(str(rev), "d-META00001")
    assert (out / "user").read_text() == runas.get("runas", "root") + "\n"
    assert not list(host.tmp.rglob("INJECTED*")) and not list(host.cwd.glob("INJECTED*"))


# -- ApplicationStop, the cleanup file, file_exists_behavior, permissions --

def test_application_stop_runs_from_the_last_deployment_that_passed_install(host):
    stops = host.out / "stops"

    def rev(marker, fail_in=None):
        hooks = {"ApplicationStop": [("stop.sh", f'echo "{marker} $DEPLOYMENT_ID $(readlink -f "$0")" '
                                                 f'>> "{stops}"\n', {})]}
        if fail_in:
            hooks[fail_in] = [("fail.sh", "exit 1\n", {})]
        return revision(host.tmp / marker, hooks)

    lifecycle.deploy(str(rev("A")), "d-STOP00001")
    assert not stops.exists()  # no earlier deployment: nothing to stop
    with pytest.raises(DeployError, match="failed in BeforeInstall"):
        lifecycle.deploy(str(rev("B", fail_in="BeforeInstall")), "d-STOP00002")
    with pytest.raises(DeployError, match="failed in AfterInstall"):
        lifecycle.deploy(str(rev("C", fail_in="AfterInstall")), "d-STOP00003")
    lifecycle.deploy(str(rev("D")), "d-STOP00004")

    def stop_of(did):
        return host.deployment_dir(did) / "deployment-archive" / "hooks" / "stop.sh"

    assert stops.read_text().splitlines() == [
        f"A d-STOP00002 {stop_of('d-STOP00001')}",  # the new deployment's id, the old scripts
        f"A d-STOP00003 {stop_of('d-STOP00001')}",  # B never reached Install
        f"C d-STOP00004 {stop_of('d-STOP00003')}",  # C passed Install, then failed
    ]
    last = host.root / "deployment-instructions" / f"{GROUP}_last_successful_install"
    assert last.read_text() == str(host.deployment_dir("d-STOP00004"))


def test_application_stop_of_a_vanished_revision_fails_like_the_agent(host):
    lifecycle.deploy(str(revision(host.tmp / "A")), "d-GONE00001")
    import shutil

    shutil.rmtree(host.deployment_dir("d-GONE00001") / "deployment-archive")
    with pytest.raises(DeployError, match="failed in ApplicationStop: The CodeDeploy agent did not find "
                                          "an AppSpec file"):
        lifecycle.deploy(str(revision(host.tmp / "B")), "d-GONE00002")


def test_next_install_removes_what_the_previous_install_created(host):
    www = host.tmp / "www"
    app = www / "app"
    rev_a = revision(host.tmp / "A", files=[("payload", str(app))], payload={
        "payload/keep.txt": "A\n", "payload/old-only.txt": "A\n", "payload/sub/x.txt": "A\n",
        "payload/gone-already.txt": "A\n"})
    lifecycle.deploy(str(pack(rev_a, "tgz")), "d-CLEAN0001")
    cleanup = host.root / "deployment-instructions" / f"{GROUP}-cleanup"
    assert cleanup.read_text().splitlines() == [
        str(www), str(app), str(app / "gone-already.txt"), str(app / "keep.txt"),
        str(app / "old-only.txt"), str(app / "sub"), str(app / "sub" / "x.txt")]
    (app / "local.txt").write_text("not from a deployment\n")
    (app / "gone-already.txt").unlink()  # missing paths are ignored

    rev_b = revision(host.tmp / "B", files=[("payload", str(app))],
                     payload={"payload/keep.txt": "B\n", "payload/new.txt": "B\n"})
    # DISALLOW (the default) would refuse keep.txt if the cleanup file were not honoured.
    lifecycle.deploy(str(pack(rev_b, "zip")), "d-CLEAN0002")
    assert sorted(p.name for p in app.iterdir()) == ["keep.txt", "local.txt", "new.txt"]
    assert (app / "keep.txt").read_text() == "B\n"
    # app/ survived (not empty) and existed already: only B's files are B's to clean up.
    assert cleanup.read_text().splitlines() == [str(app / "keep.txt"), str(app / "new.txt")]
    instructions = json.loads((host.root / "deployment-instructions" / f"{GROUP}-install.json").read_text())
    archive = host.deployment_dir("d-CLEAN0002") / "deployment-archive"
    assert instructions == {"instructions": [
        {"type": "copy", "source": str(archive / "payload" / name), "destination": str(app / name)}
        for name in ("keep.txt", "new.txt")]}


def _install(host, behavior: str | None):
    dest = host.tmp / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("local\n")
    extra = f"file_exists_behavior: {behavior}\n" if behavior else ""
    rev = revision(host.tmp / "rev", files=[("payload", str(dest))], extra_yaml=extra,
                   payload={"payload/keep.txt": "bundle\n", "payload/new.txt": "bundle\n"})
    lay = agent.Layout(str(host.root), GROUP, "d-INSTALL01")
    install = lambda: installer.install(appspec.load(rev), str(rev), lay)  # noqa: E731
    return dest, install, Path(lay.cleanup_file)


def test_file_exists_behavior_disallow_refuses_and_copies_nothing(host):
    dest, install, cleanup = _install(host, None)
    with pytest.raises(DeployError, match=f"a specified file already exists at this location: "
                                          f"{dest / 'keep.txt'}"):
        install()
    assert (dest / "keep.txt").read_text() == "local\n" and not (dest / "new.txt").exists()


def test_file_exists_behavior_overwrite(host):
    dest, install, cleanup = _install(host, "OVERWRITE")
    assert install() == 2
    assert (dest / "keep.txt").read_text() == "bundle\n" and (dest / "new.txt").exists()
    assert cleanup.read_text().splitlines() == [str(dest / "keep.txt"), str(dest / "new.txt")]


def test_file_exists_behavior_retain(host):
    dest, install, cleanup = _install(host, "RETAIN")
    assert install() == 1
    assert (dest / "keep.txt").read_text() == "local\n" and (dest / "new.txt").read_text() == "bundle\n"
    assert cleanup.read_text().splitlines() == [str(dest / "new.txt")]


def test_permissions_apply_to_what_install_created_like_the_agent(host):
    dest = host.tmp / "dest"
    dest.mkdir(mode=0o755)
    dest.chmod(0o755)
    extra = f"""\
permissions:
  - object: {dest}
    mode: 700
    type:
      - directory
  - object: {dest}/run.sh
    mode: 600
    type:
      - file
  - object: {host.tmp}/not-created
    mode: 700
"""
    rev = revision(host.tmp / "rev", files=[("payload", str(dest))], extra_yaml=extra,
                   payload={"payload/run.sh": "x\n", "payload/sub/deeper/a.txt": "a\n"})
    (rev / "payload" / "sub" / "deeper" / "a.txt").chmod(0o640)
    lay = agent.Layout(str(host.root), GROUP, "d-PERMS0001")
    installer.install(appspec.load(rev), str(rev), lay)

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(dest) == 0o755  # existed before: not the installer's
    assert mode(dest / "sub") == mode(dest / "sub" / "deeper") == 0o700
    assert mode(dest / "run.sh") == 0o600
    assert mode(dest / "sub" / "deeper" / "a.txt") == 0o640  # type directory only; mode preserved
    assert any("not-created matched nothing" in line for line in host.lines)


# -- max_revisions --

def test_keeps_max_revisions_deployments_and_never_the_last_successful_one(host):
    host.conf.write_text(f":root_dir: '{host.root}'\n:max_revisions: 2\n")
    good = revision(host.tmp / "good")
    bad = revision(host.tmp / "bad", {"BeforeInstall": [("fail.sh", "exit 1\n", {})]})
    lifecycle.deploy(str(good), "d-KEEP00001")
    for did in ("d-KEEP00002", "d-KEEP00003"):
        time.sleep(0.05)  # distinct mtimes
        with pytest.raises(DeployError):
            lifecycle.deploy(str(bad), did)
    time.sleep(0.05)
    lifecycle.deploy(str(good), "d-KEEP00004")
    # 3 others, room for 1: the two oldest go, except the last successful install (d-KEEP00001).
    assert sorted(os.listdir(host.root / GROUP)) == ["d-KEEP00001", "d-KEEP00004"]
    time.sleep(0.05)
    lifecycle.deploy(str(good), "d-KEEP00005")
    assert sorted(os.listdir(host.root / GROUP)) == ["d-KEEP00004", "d-KEEP00005"]


def test_max_revisions_from_the_agents_config(tmp_path):
    conf = tmp_path / "c.yml"
    assert agent.max_revisions(str(conf)) == 5  # no config: the agent's default
    conf.write_text(":root_dir: /x\n")
    assert agent.max_revisions(str(conf)) == 5
    conf.write_text(":max_revisions: 3\n")
    assert agent.max_revisions(str(conf)) == 3
    conf.write_text(":max_revisions: 0\n")
    with pytest.raises(DeployError, match="max_revisions"):
        agent.max_revisions(str(conf))


# -- unpacking --

def _zip(path: Path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("appspec.yml", "version: 0.0\nos: linux\n")
        for name, mode, data in entries:
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            zi.external_attr = mode << 16
            zf.writestr(zi, data)
    return path


def _tar(path: Path, members):
    with tarfile.open(path, "w:gz") as tf:
        data = b"version: 0.0\nos: linux\n"
        info = tarfile.TarInfo("appspec.yml")
        info.size = len(data)
        import io

        tf.addfile(info, io.BytesIO(data))
        for info in members:
            tf.addfile(info)
    return path


def _tarinfo(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize("make, message", [
    (lambda p: _zip(p, [("link", stat.S_IFLNK | 0o777, "/etc/passwd")]), "symbolic link"),
    (lambda p: _zip(p, [("../evil", stat.S_IFREG | 0o644, "x")]), "outside the bundle"),
    (lambda p: _zip(p, [("/tmp/evil-abs", stat.S_IFREG | 0o644, "x")]), "outside the bundle"),
    (lambda p: _zip(p, [("a/../../evil", stat.S_IFREG | 0o644, "x")]), "outside the bundle"),
    (lambda p: _tar(p, [_tarinfo("etc", tarfile.SYMTYPE, "/etc")]), "points outside the bundle"),
    (lambda p: _tar(p, [_tarinfo("up", tarfile.SYMTYPE, "../..")]), "points outside the bundle"),
    (lambda p: _tar(p, [_tarinfo("../evil", tarfile.REGTYPE)]), "outside the bundle"),
    (lambda p: _tar(p, [_tarinfo("null", tarfile.CHRTYPE)]), "not a file, directory or link"),
    (lambda p: _tar(p, [_tarinfo("sub", tarfile.DIRTYPE), _tarinfo("sub/l1", tarfile.SYMTYPE, ".."),
                        _tarinfo("sub/l1/l2", tarfile.SYMTYPE, ".."), _tarinfo("l2/l3", tarfile.SYMTYPE, ".."),
                        _tarinfo("l2/l3/evil", tarfile.REGTYPE)]), "'sub/l1' is a symbolic link to a directory"),
    (lambda p: (p.write_text("just text\n"), p)[1], "not a zip, tar.gz or tar archive"),
])
def test_unsafe_or_unknown_archives_are_refused_before_anything_changes(host, make, message):
    bundle = make(host.tmp / "bundle.zip")
    with pytest.raises(BundleError, match=message) as info:
        lifecycle.deploy(str(bundle), "d-UNSAFE001")
    assert info.value.exit_code == 2
    assert not (host.root / GROUP).exists() and not (host.tmp / "evil").exists()
    assert not os.path.exists("/tmp/evil-abs")


def test_zip_modes_are_restored_like_unzip(tmp_path):
    bundle = _zip(tmp_path / "b.zip", [("hooks/", stat.S_IFDIR | 0o755, ""),
                                       ("hooks/x.sh", stat.S_IFREG | 0o755, "#!/bin/sh\n"),
                                       ("data.txt", stat.S_IFREG | 0o640, "d")])
    assert extract(str(bundle), str(tmp_path / "mine")) == "zip"
    subprocess.run(["unzip", "-qo", str(bundle), "-d", str(tmp_path / "unzip")], check=True)
    for rel in ("hooks", "hooks/x.sh", "data.txt", "appspec.yml"):
        assert stat.S_IMODE(os.stat(tmp_path / "mine" / rel).st_mode) == \
            stat.S_IMODE(os.stat(tmp_path / "unzip" / rel).st_mode), rel
    # setuid/setgid/sticky bits, which unzip strips, are refused (tests/test_archive.py)


def test_a_single_top_directory_with_the_appspec_is_stripped_like_the_agent(host):
    rev = revision(host.tmp / "top" / "music-bingo", probe_hooks(host.out, "T", events=("BeforeInstall",)))
    bundle = host.tmp / "nested.tgz"
    subprocess.run(["tar", "czf", str(bundle), "-C", str(rev.parent), "music-bingo"], check=True)
    lifecycle.deploy(str(bundle), "d-NESTED001")
    archive = host.deployment_dir("d-NESTED001") / "deployment-archive"
    assert (archive / "appspec.yml").is_file()
    assert (host.out / "BeforeInstall-T" / "script").read_text().strip() == str(archive / "hooks/probe.sh")


# -- links: never followed to a directory or out of the revision --

@pytest.fixture
def secrets_dir(host):
    """What /etc/bingo-host is on a host: root's, 0700, db-password 0600 (a copy under tmp)."""
    etc = host.tmp / "etc-bingo-host"
    etc.mkdir(mode=0o700)
    (etc / "db-password").write_text("s3cret\n")
    (etc / "db-password").chmod(0o600)
    return etc


def _www_revision(host, name: str, links: dict) -> tuple[Path, Path]:
    """A revision whose build/ goes to a web root, with links {path in build/: target}."""
    www = host.tmp / "www" / name
    rev = revision(host.tmp / name, files=[("build", str(www))],
                   payload={"build/index.html": "<html>\n", "build/static/app.js": "js\n"})
    for rel, target in links.items():
        os.symlink(target, rev / "build" / rel)
    return rev, www


def test_install_never_copies_through_a_link_to_the_hosts_secrets(host, secrets_dir):
    """The reported case: build/conf -> /etc/bingo-host put db-password under the web root. Install
    (on a revision unpacked by anything else) refuses the link before copying anything."""
    rev, www = _www_revision(host, "leaky", {"conf": str(secrets_dir)})
    lay = agent.Layout(str(host.root), GROUP, "d-LEAKY0001")
    with pytest.raises(DeployError, match=f"build/conf: a symbolic link to {secrets_dir}, outside the "
                                          "revision; Install does not follow it"):
        installer.install(appspec.load(rev), str(rev), lay)
    assert not www.exists()
    assert [p for p in host.tmp.rglob("db-password") if p.parent != secrets_dir] == []


@pytest.mark.parametrize("links, message", [
    ({"pw": "../../etc-bingo-host/db-password"}, "build/pw: a symbolic link to .*/etc-bingo-host/db-password, "
                                                 "outside the revision"),
    ({"assets": "static"}, "build/assets: a symbolic link to .*/build/static, which is not a regular file"),
    ({"up": ".."}, "build/up: a symbolic link to .*/inlinks, outside the revision"),
    ({"gone": "nothing-here"}, "build/gone: a symbolic link to .*/nothing-here, which is not a regular"),
])
def test_install_refuses_links_to_directories_out_of_the_tree_or_to_nothing(host, secrets_dir, links,
                                                                           message):
    rev, www = _www_revision(host, "inlinks", links)
    lay = agent.Layout(str(host.root), GROUP, "d-LINKS0001")
    with pytest.raises(DeployError, match=message):
        installer.install(appspec.load(rev), str(rev), lay)
    assert not www.exists()


def test_install_copies_a_link_to_a_file_inside_as_that_file(host):
    """What the agent's FileUtils.copy makes of it: a regular file, no link under the web root."""
    rev, www = _www_revision(host, "filelink", {"main.js": "static/app.js"})
    lay = agent.Layout(str(host.root), GROUP, "d-FILELNK01")
    installer.install(appspec.load(rev), str(rev), lay)
    assert not (www / "main.js").is_symlink() and (www / "main.js").read_text() == "js\n"


def test_install_replaces_a_link_at_the_destination_instead_of_writing_through_it(host, secrets_dir):
    rev, www = _www_revision(host, "overwrite", {})
    (rev / "appspec.yml").write_text((rev / "appspec.yml").read_text() + "file_exists_behavior: OVERWRITE\n")
    (www / "static").mkdir(parents=True)
    os.symlink(secrets_dir / "db-password", www / "index.html")
    lay = agent.Layout(str(host.root), GROUP, "d-OVERWR001")
    installer.install(appspec.load(rev), str(rev), lay)
    assert (secrets_dir / "db-password").read_text() == "s3cret\n"
    assert not (www / "index.html").is_symlink() and (www / "index.html").read_text() == "<html>\n"


@pytest.mark.parametrize("make, message", [
    (lambda rev, etc: os.symlink(etc, rev / "build" / "conf"), "'build/conf' is a symbolic link that "
                                                                "points outside the bundle"),
    (lambda rev, etc: os.symlink("static", rev / "build" / "assets"), "'build/assets' is a symbolic link "
                                                                       "that now resolves to .*/build/static"),
    (lambda rev, etc: os.mkfifo(rev / "build" / "pipe"), "'build/pipe' is not a file, directory or link"),
    (lambda rev, etc: (rev / "build" / "index.html").chmod(0o4755), "'build/index.html' has the setuid"),
])
def test_a_directory_revision_gets_the_archives_checks(host, secrets_dir, make, message):
    """`bingo-host deploy DIR` copied the tree as it was (links kept); now every entry goes through
    the unpacker's checks, before anything runs."""
    rev, www = _www_revision(host, "dirrev", {})
    make(rev, secrets_dir)
    with pytest.raises(BundleError, match=message) as info:
        lifecycle.deploy(str(rev), "d-DIRREV001")
    assert info.value.exit_code == 2
    assert not www.exists() and not host.root.exists()


def test_a_directory_revision_is_copied_root_owned_with_its_modes(host):
    rev, www = _www_revision(host, "owned", {"main.js": "static/app.js"})
    (rev / "build" / "index.html").chmod(0o640)
    for path in [rev, *rev.rglob("*")]:
        os.lchown(path, 1234, 1234)
    lifecycle.deploy(str(rev), "d-OWNED0001")
    archive = host.deployment_dir("d-OWNED0001") / "deployment-archive"
    entries = [archive, *archive.rglob("*")]
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in entries} == {(0, 0)}
    assert stat.S_IMODE((archive / "build" / "index.html").stat().st_mode) == 0o640
    assert os.readlink(archive / "build" / "main.js") == "static/app.js"
    assert (www / "main.js").read_text() == "js\n" and not (www / "main.js").is_symlink()
