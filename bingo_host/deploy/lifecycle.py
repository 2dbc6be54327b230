"""`bingo-host deploy BUNDLE`: run a revision through the lifecycle the CodeDeploy agent runs.

The same appspec.yml and hook scripts, in the same order, with the same environment
(LIFECYCLE_EVENT, DEPLOYMENT_ID, APPLICATION_NAME, DEPLOYMENT_GROUP_NAME, DEPLOYMENT_GROUP_ID),
`runas` as `su USER -c`, per-hook timeouts, file_exists_behavior and permissions. Each script's
output is printed prefixed with its event.

This module starts hook scripts with subprocess directly rather than through subp.run: the agent's
behaviour needs output streamed line by line, a timeout that kills the script's whole process
tree, and noticing a script that exits while a background child still holds its stdout (which
hangs the real agent until the hook's timeout).
"""

from __future__ import annotations

import fnmatch
import grp
import hashlib
import os
import pwd
import secrets
import select
import shutil
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .. import layout
from . import BundleError, DeployError, appspec

WORK_DIR = f"{layout.STATE_DIR}/deploy"
LAST_REVISION = f"{WORK_DIR}/last-revision"  # appspec.yml + hooks of the last successful deployment
HELD_PIPE_GRACE = 3.0


def new_deployment_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(9))


def _safe_extract(archive: str, dest: str) -> None:
    """Unpack a revision archive, refusing members that would land outside dest."""
    base = os.path.realpath(dest)
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{archive}: not a readable tar archive: {exc}") from None
    with tf:
        for m in tf.getmembers():
            name = m.name
            target = os.path.realpath(os.path.join(base, name))
            if name.startswith("/") or (target != base and not target.startswith(base + "/")):
                raise BundleError(f"{archive}: member {name!r} points outside the bundle")
            if m.issym() or m.islnk():
                link = m.linkname if m.islnk() else os.path.join(os.path.dirname(name), m.linkname)
                ltarget = os.path.realpath(os.path.join(base, link))
                if m.linkname.startswith("/") or (ltarget != base and not ltarget.startswith(base + "/")):
                    raise BundleError(f"{archive}: link {name!r} -> {m.linkname!r} points outside the bundle")
            elif not (m.isfile() or m.isdir()):
                raise BundleError(f"{archive}: member {name!r} is not a file, directory or link")
        # Members were checked above; "fully_trusted" keeps modes (hooks stay executable).
        kwargs = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(base, numeric_owner=True, **kwargs)


@contextmanager
def unpacked(bundle: str, deployment_id: str):
    """The revision as a directory: the directory itself, or a .tar.gz unpacked under WORK_DIR."""
    if os.path.isdir(bundle):
        yield Path(bundle).resolve(), None
        return
    if not os.path.isfile(bundle):
        raise BundleError(f"{bundle}: no such file or directory")
    os.makedirs(WORK_DIR, mode=0o700, exist_ok=True)
    for old in Path(WORK_DIR).glob("bundle-*"):  # left by a killed run
        shutil.rmtree(old, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=f"bundle-{deployment_id}-", dir=WORK_DIR)
    try:
        _safe_extract(bundle, tmp)
        h = hashlib.sha256()
        with open(bundle, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        yield Path(tmp), h.hexdigest()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- Install: files and permissions, as the agent does them --

def _copy_file(src: Path, dst: Path, behavior: str) -> None:
    if os.path.lexists(dst):
        if behavior == "RETAIN":
            return
        if behavior == "DISALLOW":
            raise DeployError(f"Install: the deployment failed because a specified file already exists "
                              f"at this location: {dst} (file_exists_behavior DISALLOW)")
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        else:
            dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


def install(spec: appspec.AppSpec, bundle: Path, echo=print) -> int:
    count = 0
    for m in spec.files:
        src = bundle / m.source if m.source else bundle
        dest = Path(m.destination)
        if src.is_file():
            _copy_file(src, dest / src.name, spec.file_exists_behavior)
            count += 1
            continue
        for dirpath, dirnames, filenames in os.walk(src):
            rel = Path(dirpath).relative_to(src)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for name in dirnames[:]:
                if (Path(dirpath) / name).is_symlink():
                    filenames.append(name)
                    dirnames.remove(name)
            for name in filenames:
                _copy_file(Path(dirpath) / name, dest / rel / name, spec.file_exists_behavior)
                count += 1
    for p in spec.permissions:
        _apply_permission(p)
    echo(f"[Install] copied {count} files ({', '.join(m.destination for m in spec.files) or 'none'}); "
         f"{len(spec.permissions)} permission rules applied")
    return count


def _apply_permission(p: appspec.Permission) -> None:
    uid = pwd.getpwnam(p.owner).pw_uid if p.owner else -1
    gid = grp.getgrnam(p.group).gr_gid if p.group else -1

    def apply(path: str, kind: str) -> None:
        if kind not in p.types or os.path.islink(path):
            return
        os.chown(path, uid, gid)
        if p.mode is not None:
            os.chmod(path, p.mode)

    if not os.path.exists(p.object):
        raise DeployError(f"Install: permissions object {p.object} does not exist")
    if os.path.isfile(p.object):
        apply(p.object, "file")
        return
    for dirpath, dirnames, filenames in os.walk(p.object):
        for name, kind in [(d, "directory") for d in dirnames] + [(f, "file") for f in filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, p.object)
            if p.pattern not in ("**", "*") and not fnmatch.fnmatch(name, p.pattern):
                continue
            if any(fnmatch.fnmatch(name, e) or fnmatch.fnmatch(rel, e) for e in p.excepts):
                continue
            apply(path, kind)


# -- hook scripts --

def _kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        victims = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for v in victims:
        try:
            v.kill()
        except psutil.NoSuchProcess:
            pass


def run_script(bundle: Path, script: appspec.Script, env: dict, echo=print) -> None:
    """Run one hook script like the agent: output prefixed with its event, timeout enforced."""
    path = str(bundle / script.location)
    argv = ["su", script.runas, "-c", path] if script.runas else [path]
    echo(f"[{script.event}] running {script.location}"
         + (f" as {script.runas}" if script.runas else "") + f" (timeout {script.timeout} s)")
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=str(bundle), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    fd = proc.stdout.fileno()
    buf = b""
    reason = ""  # the script's first "error:" line, repeated in the deployment's error
    exited_at = None
    try:
        while True:
            elapsed = time.monotonic() - start
            if elapsed > script.timeout:
                _kill_tree(proc)
                raise DeployError(f"{script.event}: {script.location} timed out after {script.timeout} s "
                                  "(killed)")
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() - exited_at > HELD_PIPE_GRACE:
                raise DeployError(
                    f"{script.event}: {script.location} exited {proc.returncode} but left a background "
                    "process holding its stdout/stderr; the CodeDeploy agent would hang until the "
                    "hook's timeout (redirect the background process's output, e.g. >/dev/null 2>&1)")
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if "error:" in text and not reason:
                    reason = text.split("error:", 1)[1].strip()
                echo(f"[{script.event}] {text}")
    finally:
        if buf:
            echo(f"[{script.event}] {buf.decode(errors='replace')}")
        proc.stdout.close()
    rc = proc.wait()
    took = time.monotonic() - start
    if rc != 0:
        raise DeployError(f"{script.event}: {script.location} failed with exit code {rc} after {took:.1f} s"
                          + (f": {reason}" if reason else ""))
    echo(f"[{script.event}] {script.location} succeeded in {took:.1f} s")


def _run_event(event: str, spec: appspec.AppSpec, bundle: Path, base_env: dict, echo) -> None:
    for script in spec.hooks.get(event, ()):
        run_script(bundle, script, dict(base_env, LIFECYCLE_EVENT=event), echo)


def _save_last_revision(bundle: Path, spec: appspec.AppSpec) -> None:
    """Keep appspec.yml and the hook scripts: the next deployment runs this ApplicationStop."""
    tmp = f"{LAST_REVISION}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    shutil.copy2(bundle / "appspec.yml", tmp)
    for scripts in spec.hooks.values():
        for s in scripts:
            dst = Path(tmp) / s.location
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / s.location, dst)
    shutil.rmtree(LAST_REVISION, ignore_errors=True)
    os.rename(tmp, LAST_REVISION)


def _mark_failed(deployment_id: str, reason: str) -> None:
    """A hook that was killed (timeout) could not record its own failure: release the lock."""
    from . import state

    st = state.load()
    if st and st.get("deployment_id") == deployment_id and st.get("status") == "in-progress":
        st.update(status="failed", event_status="failed", finished_at=state.now(),
                  error=reason.splitlines()[0])
        state.save(st)


def deploy(bundle: str, deployment_id: str | None = None, application_name: str = "music-bingo",
           group_name: str = "local", echo=print) -> str:
    """Deploy a revision (directory or .tar.gz) the way the agent would; the deployment id."""
    deployment_id = deployment_id or new_deployment_id()
    with unpacked(bundle, deployment_id) as (root, sha256):
        spec = appspec.load(root)  # every check before anything changes
        for p in spec.permissions:
            for who, db in ((p.owner, pwd.getpwnam), (p.group, grp.getgrnam)):
                if who:
                    try:
                        db(who)
                    except KeyError:
                        raise BundleError(f"permissions: {who!r} does not exist on this host") from None
        env = dict(os.environ)
        env.update(DEPLOYMENT_ID=deployment_id, APPLICATION_NAME=application_name,
                   DEPLOYMENT_GROUP_NAME=group_name, DEPLOYMENT_GROUP_ID=f"local-{group_name}",
                   BINGO_HOST_BUNDLE_DIR=str(root), BINGO_HOST_BUNDLE=os.path.abspath(bundle),
                   BINGO_HOST_DEPLOY_DRIVER_PID=str(os.getpid()))
        if sha256:
            env["BINGO_HOST_BUNDLE_SHA256"] = sha256
        echo(f"deploy: {deployment_id} from {bundle}")
        start = time.monotonic()
        try:
            last = Path(LAST_REVISION)
            if (last / "appspec.yml").exists():
                try:
                    previous_spec = appspec.load(last)
                except BundleError as exc:
                    echo(f"[ApplicationStop] skipped: the previous revision's appspec is unusable ({exc})")
                else:
                    _run_event("ApplicationStop", previous_spec, last, env, echo)
            for event in ("BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService"):
                if event == "Install":
                    install(spec, root, echo)
                else:
                    _run_event(event, spec, root, env, echo)
        except DeployError as exc:
            _mark_failed(deployment_id, str(exc))
            raise DeployError(f"deployment {deployment_id} failed: {exc}") from None
        _save_last_revision(root, spec)
        echo(f"deploy: {deployment_id} succeeded in {time.monotonic() - start:.1f} s")
    return deployment_id
