"""`bingo-host deploy BUNDLE`: run a revision through the lifecycle the CodeDeploy agent runs.

What the agent (lib/instance_agent/plugins/codedeploy/*.rb, and `codedeploy-local`) does for a
local-file revision, done the same way, in the same places, so the agent and this emulator share
one history on a host:

    <root_dir>/<group id>/<deployment id>/        the deployment directory
        bundle.tar -> BUNDLE                      (a file revision; a directory is copied instead)
        deployment-archive/                       the unpacked revision: hooks run from here
        logs/scripts.log                          every script's output, [stdout]/[stderr] lines
    <root_dir>/deployment-instructions/
        <group id>_most_recent_install            deployment directory, written after DownloadBundle
        <group id>_last_successful_install        deployment directory, written after Install
        <group id>-cleanup                        what the last Install created (removed by the next)
        <group id>-install.json                   the last Install's instructions

`root_dir` and `max_revisions` come from the agent's config (agent.CONFIG). Events run in the
agent's order: ApplicationStop (the scripts of the last deployment that passed Install),
DownloadBundle (older deployment directories pruned to max_revisions, the revision unpacked),
BeforeInstall, Install (the agent's installer: cleanup file, file_exists_behavior, permissions),
AfterInstall, ApplicationStart, ValidateService.

Hook scripts run like the agent runs them: `su USER -c SCRIPT` for `runas`, in their own process
group, stdin closed, stdout and stderr read separately, the driver's working directory, and the
environment the agent gives a local-file revision: the inherited one plus LIFECYCLE_EVENT,
DEPLOYMENT_ID, APPLICATION_NAME, DEPLOYMENT_GROUP_NAME and DEPLOYMENT_GROUP_ID. bingo-host adds
only, for information and the deploy lock (the agent never sets them):
    BINGO_HOST_DEPLOY_DRIVER_PID   this process: the deploy lock counts the deployment alive
    BINGO_HOST_BUNDLE              the revision's path   } provenance for the release record
    BINGO_HOST_BUNDLE_SHA256       its sha256 (files)    }
A script still running at its timeout gets SIGTERM on its process group (never SIGKILL) and the
deployment fails once it exited; a script that exits while a background process keeps its
stdout (or stderr) open fails at its timeout, as under the agent.

Scripts are started with subprocess directly rather than through subp.run: the agent's behaviour
needs output streamed line by line from two pipes and its exact timeout handling.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import pwd
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout
from . import BundleError, DeployError, agent, appspec

#: Where `bingo-host deploy` kept its own copies before it used the agent's layout; removed.
LEGACY_WORK_DIR = f"{layout.STATE_DIR}/deploy"
#: codedeploy-local's defaults (lib/aws/codedeploy/local/deployer.rb).
DEFAULT_GROUP_ID = "default-local-deployment-group"
DEFAULT_GROUP_NAME = "LocalFleet"
DEFAULT_APPLICATION_NAME = "music-bingo"
UNPACK_DIR = ".bingo-host-unpack"  # inside the deployment directory, until DownloadBundle


def new_deployment_id() -> str:
    """d- and 9 of A-Z0-9, like the ids CodeDeploy gives."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(9))


# -- the agent's layout --

@dataclass(frozen=True)
class Layout:
    root: str
    group_id: str
    deployment_id: str

    @property
    def group_dir(self) -> str:
        return f"{self.root}/{self.group_id}"

    @property
    def deployment_dir(self) -> str:
        return f"{self.root}/{self.group_id}/{self.deployment_id}"

    @property
    def archive(self) -> str:
        return f"{self.deployment_dir}/deployment-archive"

    @property
    def script_log(self) -> str:
        return f"{self.deployment_dir}/logs/scripts.log"

    @property
    def instructions(self) -> str:
        return f"{self.root}/deployment-instructions"

    @property
    def last_successful_install(self) -> str:
        return f"{self.instructions}/{self.group_id}_last_successful_install"

    @property
    def most_recent_install(self) -> str:
        return f"{self.instructions}/{self.group_id}_most_recent_install"

    @property
    def cleanup_file(self) -> str:
        return f"{self.instructions}/{self.group_id}-cleanup"

    @property
    def install_file(self) -> str:
        return f"{self.instructions}/{self.group_id}-install.json"


def _read_dir_file(path: str) -> str | None:
    """A deployment directory recorded in deployment-instructions (the agent chomps it)."""
    try:
        with open(path) as f:
            return f.read().rstrip("\n") or None
    except FileNotFoundError:
        return None


def _write_dir_file(path: str, deployment_dir: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(deployment_dir)  # no newline, as the agent writes it
    os.replace(tmp, path)


# -- unpacking --

def bundle_type(path: str) -> str:
    """'zip', 'tgz' or 'tar', from the file's content (its name does not matter)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read it: {exc}") from None
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tgz"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    raise BundleError(f"{path}: not a zip, tar.gz or tar archive (nor a directory)")


def _inside(base: str, name: str) -> bool:
    target = os.path.realpath(os.path.join(base, name))
    return target == base or target.startswith(base + "/")


def _bad_name(name: str) -> bool:
    return name.startswith("/") or ".." in name.replace("\\", "/").split("/")


def _extract_tar(archive: str, base: str) -> None:
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{archive}: not a readable tar archive: {exc}") from None
    with tf:
        for m in tf.getmembers():
            name = m.name
            if _bad_name(name) or not _inside(base, name):
                raise BundleError(f"{archive}: member {name!r} points outside the bundle")
            if m.issym() or m.islnk():
                link = m.linkname if m.islnk() else os.path.join(os.path.dirname(name), m.linkname)
                if m.linkname.startswith("/") or not _inside(base, link):
                    raise BundleError(f"{archive}: link {name!r} -> {m.linkname!r} points outside the bundle")
            elif not (m.isfile() or m.isdir()):
                raise BundleError(f"{archive}: member {name!r} is not a file, directory or link")
        # Members were checked above; "fully_trusted" keeps modes like `tar -xp` (hooks stay
        # executable).
        kwargs = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(base, numeric_owner=True, **kwargs)


def _extract_zip(archive: str, base: str) -> None:
    """Unpack like the agent's `unzip -qo`: unix modes from the entries (without setuid, setgid
    and sticky), the umask's defaults for entries without one; symbolic links refused."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{archive}: not a readable zip archive: {exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    with zf:
        plan = []
        for zi in zf.infolist():
            name = zi.filename
            if not name or _bad_name(name) or not _inside(base, name):
                raise BundleError(f"{archive}: member {name!r} points outside the bundle")
            mode = zi.external_attr >> 16 if zi.create_system == 3 else 0
            kind = stat.S_IFMT(mode)
            if stat.S_ISLNK(mode):
                raise BundleError(f"{archive}: member {name!r} is a symbolic link (not allowed in a "
                                  "zip bundle)")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise BundleError(f"{archive}: member {name!r} is not a file or directory")
            is_dir = name.endswith("/") or kind == stat.S_IFDIR
            perms = (mode & 0o777) if mode & 0o7777 else ((0o777 if is_dir else 0o666) & ~umask)
            plan.append((zi, name.rstrip("/"), is_dir, perms))
        dirs = []
        for zi, name, is_dir, perms in plan:
            target = os.path.join(base, name)
            if is_dir:
                os.makedirs(target, exist_ok=True)
                dirs.append((target, perms))
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target):
                os.unlink(target)
            with zf.open(zi) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target, perms)
            stamp = time.mktime(zi.date_time + (0, 0, -1))
            os.utime(target, (stamp, stamp))
        for target, perms in reversed(dirs):  # last, like unzip: a 0555 directory can be filled
            os.chmod(target, perms)


def _strip_leading_directory(dest: str) -> None:
    """The agent's rule: one top-level directory holding an appspec is the revision's root."""
    entries = os.listdir(dest)
    if len(entries) != 1:
        return
    top = os.path.join(dest, entries[0])
    if os.path.isdir(top) and not os.path.islink(top) \
            and any(re.search("appspec", e, re.I) for e in os.listdir(top)):
        tmp = f"{dest}.strip"
        os.rename(top, tmp)
        os.rmdir(dest)
        os.rename(tmp, dest)


def extract(archive: str, dest: str) -> str:
    """Unpack a zip, tar.gz or tar revision into dest (created) with the safety checks: no member
    outside dest, no absolute or '..' names, no link leaving the tree, no device files, no
    symbolic links in a zip. The archive's type ('zip', 'tgz', 'tar')."""
    kind = bundle_type(archive)
    os.makedirs(dest, exist_ok=True)
    base = os.path.realpath(dest)
    if kind == "zip":
        _extract_zip(archive, base)
    else:
        _extract_tar(archive, base)
    _strip_leading_directory(base)
    return kind


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _remove(path: str) -> None:
    """rm -rf, as the agent removes deployment directories."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def cleanup_old_archives(lay: Layout, retain: int, echo=print) -> list[str]:
    """The agent's cleanup_old_archives: keep `retain` deployment directories in the group (this
    one included), never removing the last successful install's; the oldest (mtime) go."""
    try:
        others = [f"{lay.group_dir}/{e}" for e in os.listdir(lay.group_dir)]
    except FileNotFoundError:
        return []
    if lay.deployment_dir in others:
        others.remove(lay.deployment_dir)
    extra = len(others) - retain + 1
    if extra <= 0:
        return []
    last = _read_dir_file(lay.last_successful_install)
    if last in others:
        others.remove(last)
    oldest = sorted(others, key=lambda p: os.lstat(p).st_mtime)[:extra]
    for path in oldest:
        _remove(path)
    if oldest:
        echo(f"[DownloadBundle] removed old deployment directories (max_revisions {retain}): "
             f"{', '.join(os.path.basename(p) for p in oldest)}")
    return oldest


# -- Install: the agent's installer (installer.rb, install_instruction.rb) --

def _simple_glob(name: str, pattern: str) -> bool:
    """The agent's matches_simple_glob: only '*' is special, and never across a '/'."""
    if "/" in name:
        return False
    return re.fullmatch("".join(".*" if c == "*" else re.escape(c) for c in pattern), name, re.S) is not None


def _matches(permission: appspec.Permission, name: str, patterns) -> bool:
    base = os.path.abspath(permission.object).rstrip("/") + "/"
    name = name.rstrip("/")
    if not name.startswith(base):
        return False
    rel = name[len(base):]
    return any(p == "**" or _simple_glob(rel, p) for p in patterns)


@dataclass
class Instructions:
    """The agent's CommandBuilder: what Install will do, in order."""

    commands: list[dict] = field(default_factory=list)
    copy_targets: dict[str, str] = field(default_factory=dict)
    mkdir_targets: list[str] = field(default_factory=list)
    permission_targets: set[str] = field(default_factory=set)

    def copy(self, source: str, destination: str) -> None:
        destination = os.path.abspath(destination)
        if destination in self.copy_targets:
            raise DeployError(f"The deployment failed because the application specification file specifies "
                              f"two source files named {source} and {self.copy_targets[destination]} for "
                              f"the same destination ({destination})")
        if destination in self.mkdir_targets:
            raise DeployError(f"The deployment failed because the application specification file calls for "
                              f"installing the file {source}, but a file with that name already exists at "
                              f"the location ({destination})")
        self.commands.append({"type": "copy", "source": source, "destination": destination})
        self.copy_targets[destination] = source

    def mkdir(self, destination: str) -> None:
        destination = os.path.abspath(destination)
        if destination in self.copy_targets:
            raise DeployError(f"The deployment failed because the application specification file includes "
                              f"an mkdir command more than once for the same destination path "
                              f"({destination})")
        if destination not in self.mkdir_targets:
            self.commands.append({"type": "mkdir", "directory": destination})
            self.mkdir_targets.append(destination)

    def set_permissions(self, obj: str, p: appspec.Permission) -> None:
        obj = os.path.abspath(obj)
        if obj in self.permission_targets:
            raise DeployError(f"The deployment failed because the permissions setting for ({obj}) is "
                              "specified more than once in the application specification file")
        self.permission_targets.add(obj)
        if p.mode is not None:
            self.commands.append({"type": "chmod", "mode": f"{p.mode:03o}", "file": obj})
        if p.owner is not None or p.group is not None:
            self.commands.append({"type": "chown", "owner": p.owner, "group": p.group, "file": obj})

    def find_matches(self, p: appspec.Permission) -> list[str]:
        out = []
        if "file" in p.types:
            out += [o for o in self.copy_targets
                    if _matches(p, o, [p.pattern]) and not _matches(p, o, p.excepts)]
        if "directory" in p.types:
            out += [o for o in self.mkdir_targets
                    if _matches(p, o, [p.pattern]) and not _matches(p, o, p.excepts)]
        return out


def _normal_copy(i: Instructions, src: str, dest: str, behavior: str) -> None:
    if os.path.exists(dest):
        if behavior == "DISALLOW":
            raise DeployError(f"The deployment failed because a specified file already exists at this "
                              f"location: {dest}")
        if behavior == "OVERWRITE":
            i.copy(src, dest)
        # RETAIN: neither copy nor fail
    else:
        i.copy(src, dest)


def _directory_copy(i: Instructions, src: str, dest: str, behavior: str) -> None:
    if not os.path.isdir(dest):
        i.mkdir(dest)
    for entry in sorted(os.listdir(src)):
        s, d = os.path.join(src, entry), os.path.join(dest, entry)
        if os.path.isdir(s):
            _directory_copy(i, s, d, behavior)
        else:
            _normal_copy(i, s, d, behavior)


def _missing_ancestors(i: Instructions, destination: str) -> None:
    missing = []
    parent = os.path.dirname(destination)
    while not os.path.exists(parent) and parent not in (".", "/"):
        missing.insert(0, parent)
        parent = os.path.dirname(parent)
    for d in missing:
        i.mkdir(d)


def generate_instructions(spec: appspec.AppSpec, archive: str) -> Instructions:
    i = Instructions()
    for m in spec.files:
        src = os.path.join(archive, m.source) if m.source else archive
        if os.path.isdir(src):
            _missing_ancestors(i, m.destination)
            _directory_copy(i, src, m.destination, spec.file_exists_behavior)
        else:
            dest = os.path.join(m.destination, os.path.basename(src))
            _missing_ancestors(i, dest)
            _normal_copy(i, src, dest, spec.file_exists_behavior)
    for p in spec.permissions:
        obj = os.path.abspath(p.object)
        if obj in i.copy_targets:
            if "file" in p.types:
                if p.pattern != "**" or p.excepts:
                    raise DeployError(f"The deployment failed because the application specification file "
                                      f"includes an object ({p.object}) with an invalid pattern or except "
                                      "for a file")
                i.set_permissions(obj, p)
        elif obj in i.mkdir_targets or os.path.isdir(obj):
            for match in i.find_matches(p):
                i.set_permissions(match, p)
    return i


def _remove_installed(path: str) -> None:
    """The agent's RemoveCommand: missing paths ignored, non-empty directories kept."""
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    elif os.path.exists(path):
        os.unlink(path)


def remove_previous_install(cleanup_file: str) -> int:
    """Remove what the previous Install recorded (newest first), then the cleanup file."""
    try:
        with open(cleanup_file, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # a path the interrupted Install never finished writing
    removed = 0
    for line in reversed(lines):
        if line.startswith("semanage\0"):
            continue  # bingo-host never sets SELinux contexts
        path = line.strip()
        if path:
            existed = os.path.lexists(path)
            _remove_installed(path)
            removed += existed and not os.path.lexists(path)
    os.unlink(cleanup_file)
    return removed


def _copy(src: str, dst: str) -> None:
    """FileUtils.copy(preserve: true): contents, mode, times, and owner when allowed."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    shutil.copy2(src, dst)
    st = os.stat(src)
    try:
        os.chown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        pass


def install(spec: appspec.AppSpec, archive: str, lay: Layout, echo=print) -> int:
    """The Install step: remove the previous Install's files, copy `files`, apply `permissions`,
    recording every path created in the cleanup file. The number of files copied."""
    os.makedirs(lay.instructions, exist_ok=True)
    removed = remove_previous_install(lay.cleanup_file)
    if removed:
        echo(f"[Install] removed {removed} paths the previous Install created ({lay.cleanup_file})")
    i = generate_instructions(spec, archive)
    tmp = f"{lay.install_file}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps({"instructions": i.commands}, separators=(",", ":")))
    os.replace(tmp, lay.install_file)
    copied = 0
    with open(lay.cleanup_file, "w") as cleanup:
        for cmd in i.commands:
            kind = cmd["type"]
            try:
                if kind == "copy":
                    cleanup.write(cmd["destination"] + "\n")
                    cleanup.flush()
                    _copy(cmd["source"], cmd["destination"])
                    copied += 1
                elif kind == "mkdir":
                    os.mkdir(cmd["directory"])
                    cleanup.write(cmd["directory"] + "\n")
                    cleanup.flush()
                elif kind == "chmod":
                    os.chmod(cmd["file"], int(cmd["mode"], 8))
                elif kind == "chown":
                    uid = pwd.getpwnam(cmd["owner"]).pw_uid if cmd["owner"] else -1
                    gid = grp.getgrnam(cmd["group"]).gr_gid if cmd["group"] else -1
                    os.chown(cmd["file"], uid, gid)
            except (OSError, KeyError) as exc:
                target = cmd.get("destination") or cmd.get("directory") or cmd.get("file")
                raise DeployError(f"Install: {kind} {target} failed: {exc}") from None
    for p in spec.permissions:
        if not any(os.path.abspath(p.object) == t or _matches(p, t, ["**"])
                   for t in list(i.copy_targets) + i.mkdir_targets):
            echo(f"[Install] permissions for {p.object} matched nothing this Install created "
                 "(the agent applies them only to what it copies or creates)")
    echo(f"[Install] copied {copied} files to {', '.join(m.destination for m in spec.files) or 'nowhere'}"
         f" (file_exists_behavior {spec.file_exists_behavior}); "
         f"{sum(c['type'] in ('chmod', 'chown') for c in i.commands)} permission changes")
    return copied


# -- hook scripts --

class ScriptLog:
    """<deployment dir>/logs/scripts.log, written like the agent's hook executor writes it."""

    def __init__(self, path: str):
        self.path = path
        self._f = None

    def write(self, message: bytes | str) -> None:
        if isinstance(message, str):
            message = message.encode()
        if not message.endswith(b"\n"):
            message += b"\n"
        if self._f is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._f = open(self.path, "ab")
        self._f.write(time.strftime("%Y-%m-%d %H:%M:%S ").encode() + message)
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class ScriptFailed(DeployError):
    def __init__(self, event: str, message: str):
        self.event = event
        super().__init__(message)


def _error_prefix(script: appspec.Script) -> str:
    prefix = f"Script at specified location: {script.location}"
    return f"{prefix} run as user {script.runas}" if script.runas else prefix


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_script(archive: str, script: appspec.Script, env: dict, log: ScriptLog, echo=print) -> None:
    """Run one hook script the way the agent's HookExecutor#execute_script does."""
    event, location = script.event, script.location
    path = os.path.join(archive, location)
    if not os.path.exists(path):
        raise ScriptFailed(event, f"Script does not exist at specified location: {os.path.abspath(path)}")
    if not os.access(path, os.X_OK):
        echo(f"[{event}] Script at specified location: {location} is not executable.  Trying to make "
             "it executable.")
        try:
            os.chmod(path, os.stat(path).st_mode | 0o111)
        except OSError:
            raise ScriptFailed(event, f"Unable to set script at specified location: {location} as "
                                      "executable") from None
    # prepare_script_command (linux_util.rb): `su USER -c SCRIPT`, else the script itself.
    argv = ["su", script.runas, "-c", path] if script.runas else [path]
    log.write(f"Script - {location}\n")
    echo(f"[{event}] running {location}" + (f" as {script.runas}" if script.runas else "")
         + f" (timeout {script.timeout} s)")
    # Open3.popen3(env, cmd, pgroup: true): own process group, three pipes, no chdir.
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    start = time.monotonic()
    deadline = start + script.timeout
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **group)
    proc.stdin.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    bufs = {"stdout": b"", "stderr": b""}
    open_streams = ["stdout", "stderr"]
    reason = ""  # the script's first "error:" line, repeated in the deployment's error

    def emit(stream: str, line: bytes) -> None:
        nonlocal reason
        log.write(f"[{stream}]".encode() + line + b"\n")
        text = line.decode(errors="replace")
        if "error:" in text and not reason:
            reason = text.split("error:", 1)[1].strip()
        echo(f"[{event}] {text}")

    closed = False

    def close_pipes() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        for stream in open_streams:
            if bufs[stream]:
                emit(stream, bufs[stream])
                bufs[stream] = b""
        sel.close()
        proc.stdout.close()
        proc.stderr.close()

    def timed_out() -> None:
        # The agent: Process.kill('-TERM', pid), then Open3 closes the pipes and waits for the
        # script to exit, however long that takes. No SIGKILL.
        _signal_group(proc.pid, signal.SIGTERM)
        close_pipes()
        echo(f"[{event}] {location} timed out after {script.timeout} s: sent SIGTERM to its process "
             "group; waiting for it to exit (the agent waits too)")
        proc.wait()
        raise ScriptFailed(event, f"Script at specified location: {location} failed to complete in "
                                  f"{script.timeout} seconds")

    try:
        while open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if proc.poll() is None:
                    timed_out()
                held = "STDOUT" if "stdout" in open_streams else "STDERR"
                close_pipes()
                echo(f"[{event}] {location} exited {proc.returncode}, but a process it started still "
                     f"holds its {held.lower()} open; the agent waits for it until the hook's timeout "
                     "(redirect that process's output, e.g. >/dev/null 2>&1)")
                raise ScriptFailed(event, f"Script at specified location: {location} failed to close {held}")
            for key, _ in sel.select(min(remaining, 1.0)):
                stream = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams.remove(stream)
                    if bufs[stream]:
                        emit(stream, bufs[stream])
                        bufs[stream] = b""
                    continue
                *lines, bufs[stream] = (bufs[stream] + chunk).split(b"\n")
                for line in lines:
                    emit(stream, line)
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out()
    except KeyboardInterrupt:
        _signal_group(proc.pid, signal.SIGTERM)
        raise
    finally:
        close_pipes()
    rc = proc.returncode
    took = time.monotonic() - start
    if rc != 0:
        try:
            code = str(rc) if rc > 0 else f"(killed by {signal.Signals(-rc).name})"
        except ValueError:
            code = f"(killed by signal {-rc})"
        raise ScriptFailed(event, f"{_error_prefix(script)} failed with exit code {code}"
                                  + (f": {reason}" if reason else ""))
    echo(f"[{event}] {location} succeeded in {took:.1f} s")


def run_event(event: str, spec: appspec.AppSpec, archive: str, base_env: dict, log: ScriptLog,
              echo=print) -> None:
    scripts = spec.hooks.get(event) or ()
    if not scripts:
        return
    log.write(f"LifecycleEvent - {event}\n")
    env = dict(base_env, LIFECYCLE_EVENT=event)
    for script in scripts:
        run_script(archive, script, env, log, echo)


def _application_stop(lay: Layout, env: dict, log: ScriptLog, echo) -> None:
    """ApplicationStop runs the scripts of the last deployment that passed Install (or this
    deployment's, if its archive is already there), as the agent's LastSuccessfulOrIgnore."""
    if os.path.exists(lay.archive):
        where = lay.deployment_dir
    else:
        where = _read_dir_file(lay.last_successful_install)
    if where is None:
        echo(f"[ApplicationStop] no earlier deployment of group {lay.group_id} passed Install: "
             "nothing to run")
        return
    archive = f"{where}/deployment-archive"
    if not os.path.isfile(f"{archive}/appspec.yml") and not os.path.isfile(f"{archive}/appspec.yaml"):
        raise ScriptFailed("ApplicationStop", (
            "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory "
            f'at revision-relative path "appspec.yml". The revision was unpacked to directory "{archive}", '
            f'and the AppSpec file was expected but not found at path "{archive}/appspec.yml".'))
    try:
        spec = appspec.load(Path(archive))
    except BundleError as exc:
        raise ScriptFailed("ApplicationStop", f"the appspec of the last successful install ({archive}) "
                                              f"is unusable: {exc}") from None
    if spec.hooks.get("ApplicationStop"):
        echo(f"[ApplicationStop] from {archive}")
    run_event("ApplicationStop", spec, archive, env, log, echo)


def _mark_failed(deployment_id: str, reason: str) -> None:
    """A hook that was killed (timeout) could not record its own failure: release the lock."""
    from . import state

    st = state.load(state.STATE_FILE)
    if st and st.get("deployment_id") == deployment_id and st.get("status") == "in-progress":
        st.update(status="failed", event_status="failed", finished_at=state.now(),
                  error=reason.splitlines()[0])
        state.save(st, state.STATE_FILE)


def _check_users(spec: appspec.AppSpec) -> None:
    for p in spec.permissions:
        for who, db in ((p.owner, pwd.getpwnam), (p.group, grp.getgrnam)):
            if who:
                try:
                    db(who)
                except KeyError:
                    raise BundleError(f"permissions: {who!r} does not exist on this host") from None


def deploy(bundle: str, deployment_id: str | None = None,
           application_name: str = DEFAULT_APPLICATION_NAME, group_name: str = DEFAULT_GROUP_NAME,
           group_id: str = DEFAULT_GROUP_ID, echo=print) -> str:
    """Deploy a revision (a directory, or a zip, tar.gz or tar file) the way the agent would;
    the deployment id."""
    deployment_id = deployment_id or new_deployment_id()
    source = os.path.abspath(bundle)
    if not os.path.exists(source):
        raise BundleError(f"{bundle}: no such file or directory")
    is_dir = os.path.isdir(source)
    kind = "directory" if is_dir else bundle_type(source)
    lay = Layout(agent.root_dir(agent.CONFIG), group_id, deployment_id)
    retain = agent.max_revisions(agent.CONFIG)

    # Unpacked and checked before anything runs: a bad revision changes nothing.
    created = [p for p in (lay.root, lay.group_dir, lay.deployment_dir) if not os.path.exists(p)]
    os.makedirs(lay.deployment_dir, exist_ok=True)
    unpack = f"{lay.deployment_dir}/{UNPACK_DIR}"
    _remove(unpack)
    try:
        if is_dir:
            shutil.copytree(source, unpack, symlinks=True)  # the agent's cp_r of a Local Directory
        else:
            extract(source, unpack)
        spec = appspec.load(Path(unpack))  # every check before anything changes
        _check_users(spec)
        sha256 = None if is_dir else _sha256(source)
    except BaseException:
        _remove(unpack)
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True)
        raise

    env = dict(os.environ)
    for stale in ("BINGO_HOST_BUNDLE_DIR", "BINGO_HOST_BUNDLE_SHA256"):
        env.pop(stale, None)
    env.update(DEPLOYMENT_ID=deployment_id, APPLICATION_NAME=application_name,
               DEPLOYMENT_GROUP_NAME=group_name, DEPLOYMENT_GROUP_ID=group_id,
               BINGO_HOST_DEPLOY_DRIVER_PID=str(os.getpid()), BINGO_HOST_BUNDLE=source)
    if sha256:
        env["BINGO_HOST_BUNDLE_SHA256"] = sha256
    echo(f"deploy: {deployment_id} from {bundle} ({kind}) in {lay.deployment_dir}")
    log = ScriptLog(lay.script_log)
    start = time.monotonic()
    event = "ApplicationStop"
    try:
        _application_stop(lay, env, log, echo)

        event = "DownloadBundle"
        cleanup_old_archives(lay, retain, echo)
        _remove(lay.archive)
        if not is_dir:
            _remove(f"{lay.deployment_dir}/bundle.tar")
            os.symlink(source, f"{lay.deployment_dir}/bundle.tar")  # handle_local_file
        os.rename(unpack, lay.archive)
        os.makedirs(lay.instructions, exist_ok=True)
        _write_dir_file(lay.most_recent_install, lay.deployment_dir)
        echo(f"[DownloadBundle] {kind} revision unpacked in {lay.archive}")
        archive = lay.archive

        event = "BeforeInstall"
        run_event(event, spec, archive, env, log, echo)
        event = "Install"
        install(spec, archive, lay, echo)
        _write_dir_file(lay.last_successful_install, lay.deployment_dir)
        for event in ("AfterInstall", "ApplicationStart", "ValidateService"):
            run_event(event, spec, archive, env, log, echo)
    except (DeployError, OSError) as exc:
        _mark_failed(deployment_id, str(exc))
        echo(f"deploy: see the deployment log at {lay.script_log} for more details")
        raise DeployError(f"deployment {deployment_id} failed in {event}: {exc}") from None
    finally:
        log.close()
        _remove(unpack)
    shutil.rmtree(LEGACY_WORK_DIR, ignore_errors=True)
    echo(f"deploy: {deployment_id} succeeded in {time.monotonic() - start:.1f} s")
    return deployment_id
