"""The CodeDeploy agent's Install step (installer.rb, install_instruction.rb), done the same way.

Like the agent: plan every copy, mkdir, chmod and chown from the appspec, refusing conflicts;
write the plan to <group id>-install.json; carry it out, recording each created path in the
cleanup file for the next Install to remove. Same steps and messages keep `bingo-host deploy`
and the agent interchangeable on one host. One difference, on purpose: the agent follows every
symbolic link (a link to /etc/bingo-host would copy its db-password under the web root); here a
link is copied only as the regular file it names inside the revision, anything else is refused
before anything is copied, and a link already at a destination is replaced, not written through.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import pwd
import re
import shutil
import stat
from dataclasses import dataclass, field

from . import BundleError, DeployError, appspec
from .agent import Layout

log = logging.getLogger(__name__)


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


def _is_directory(archive: str, path: str) -> bool:
    """Whether Install descends into path (a real directory) or copies it (a regular file, or a
    symbolic link to a regular file inside the revision); anything else is refused."""
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return stat.S_ISDIR(mode)
    if not stat.S_ISLNK(mode):
        raise DeployError(f"{path}: not a file, directory or link; Install does not copy it")
    real, base = os.path.realpath(path), os.path.realpath(archive)
    if not real.startswith(base + "/"):
        raise DeployError(f"{path}: a symbolic link to {real}, outside the revision; Install does "
                          "not follow it")
    if not os.path.isfile(real):
        raise DeployError(f"{path}: a symbolic link to {real}, which is not a regular file (a "
                          "directory, or nothing); Install follows links only to files")
    return False


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


def _directory_copy(i: Instructions, archive: str, src: str, dest: str, behavior: str) -> None:
    if not os.path.isdir(dest):
        i.mkdir(dest)
    for entry in sorted(os.listdir(src)):
        s, d = os.path.join(src, entry), os.path.join(dest, entry)
        if _is_directory(archive, s):
            _directory_copy(i, archive, s, d, behavior)
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
        if _is_directory(archive, src):
            _missing_ancestors(i, m.destination)
            _directory_copy(i, archive, src, m.destination, spec.file_exists_behavior)
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
    """FileUtils.copy(preserve: true): contents (a link's: the file it names, checked by
    _is_directory), mode, times, and owner when allowed; a link at dst is replaced."""
    if os.path.islink(dst):
        os.unlink(dst)
    shutil.copy2(src, dst)
    st = os.stat(src)
    try:
        os.chown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        pass


def install(spec: appspec.AppSpec, archive: str, lay: Layout) -> int:
    """The Install step: remove the previous Install's files, copy `files`, apply `permissions`,
    recording every path created in the cleanup file. The number of files copied."""
    os.makedirs(lay.instructions, exist_ok=True)
    removed = remove_previous_install(lay.cleanup_file)
    if removed:
        log.info(f"[Install] removed {removed} paths the previous Install created ({lay.cleanup_file})")
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
            log.info(f"[Install] permissions for {p.object} matched nothing this Install created "
                     "(the agent applies them only to what it copies or creates)")
    log.info(f"[Install] copied {copied} files to {', '.join(m.destination for m in spec.files) or 'nowhere'}"
             f" (file_exists_behavior {spec.file_exists_behavior}); "
             f"{sum(c['type'] in ('chmod', 'chown') for c in i.commands)} permission changes")
    return copied


def check_users(spec: appspec.AppSpec) -> None:
    """Every owner and group the permissions name exists (checked before anything changes)."""
    for p in spec.permissions:
        for who, db in ((p.owner, pwd.getpwnam), (p.group, grp.getgrnam)):
            if who:
                try:
                    db(who)
                except KeyError:
                    raise BundleError(f"permissions: {who!r} does not exist on this host") from None
