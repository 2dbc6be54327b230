"""appspec.yml for EC2/on-premises: parse and validate it the way the CodeDeploy agent would.

Every check here runs before anything on the host changes, so a bad revision is refused whole
(exit 2) instead of failing half way through a deployment.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import BundleError

#: Events in the order the agent runs them for an in-place deployment without a load balancer.
#: Install is the agent's own step (copy `files`, apply `permissions`): no script runs there.
ORDER = ("ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall",
         "ApplicationStart", "ValidateService")
SCRIPT_EVENTS = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart",
                 "ValidateService")
#: Events the agent knows but only runs behind a load balancer: accepted, not run here.
LOAD_BALANCER_EVENTS = ("BeforeBlockTraffic", "AfterBlockTraffic", "BeforeAllowTraffic",
                        "AfterAllowTraffic")
DEFAULT_TIMEOUT = 3600
FILE_EXISTS = ("DISALLOW", "OVERWRITE", "RETAIN")


@dataclass(frozen=True)
class Script:
    event: str
    location: str  # relative to the bundle root
    timeout: int = DEFAULT_TIMEOUT
    runas: str | None = None


@dataclass(frozen=True)
class FileMapping:
    source: str  # relative to the bundle root ('' = the whole bundle)
    destination: str  # absolute


@dataclass(frozen=True)
class Permission:
    object: str
    pattern: str = "**"
    excepts: tuple[str, ...] = ()
    owner: str | None = None
    group: str | None = None
    mode: int | None = None
    types: tuple[str, ...] = ("file", "directory")


@dataclass(frozen=True)
class AppSpec:
    files: tuple[FileMapping, ...]
    permissions: tuple[Permission, ...]
    hooks: dict[str, tuple[Script, ...]] = field(default_factory=dict)
    file_exists_behavior: str = "DISALLOW"


def _inside(root: Path, rel: str, what: str) -> Path:
    """root/rel, refusing absolute paths and anything that resolves outside root."""
    if rel.startswith("/") and what.startswith("hook"):
        raise BundleError(f"{what}: location {rel!r} must be relative to the bundle root")
    rel = rel.lstrip("/")
    target = (root / rel).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise BundleError(f"{what}: {rel!r} points outside the bundle")
    return target


def _mode(value, where: str) -> int:
    text = str(value)
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise BundleError(f"{where}: mode must be octal digits such as 644 or 0755 (got {value!r})")
    return int(text, 8)


def load(bundle: Path) -> AppSpec:
    """Parse and validate bundle/appspec.yml against the files the bundle really has."""
    bundle = Path(bundle)
    path = bundle / "appspec.yml"
    if not path.is_file():
        alt = bundle / "appspec.yaml"
        if not alt.is_file():
            raise BundleError(f"{bundle}: no appspec.yml at the top of the bundle")
        path = alt
    raw = path.read_bytes()
    if b"\r\n" in raw:
        raise BundleError(f"{path.name}: CRLF line endings (save it with LF endings)")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise BundleError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path.name}: expected a mapping at the top level")
    known = {"version", "os", "files", "permissions", "hooks", "file_exists_behavior"}
    unknown = set(data) - known
    if unknown:
        raise BundleError(f"{path.name}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if str(data.get("version")) != "0.0":
        raise BundleError(f"{path.name}: version must be 0.0 (got {data.get('version')!r})")
    if data.get("os") != "linux":
        raise BundleError(f"{path.name}: os must be linux (got {data.get('os')!r})")
    behavior = data.get("file_exists_behavior", "DISALLOW")
    if behavior not in FILE_EXISTS:
        raise BundleError(f"{path.name}: file_exists_behavior must be one of {', '.join(FILE_EXISTS)}")

    mappings = []
    for i, item in enumerate(data.get("files") or []):
        where = f"files[{i}]"
        if not isinstance(item, dict) or set(item) - {"source", "destination"} \
                or not isinstance(item.get("source"), str) or not isinstance(item.get("destination"), str):
            raise BundleError(f"{where}: needs a source and a destination (strings)")
        src = _inside(bundle, item["source"], where)
        if not src.exists():
            raise BundleError(f"{where}: source {item['source']!r} is not in the bundle")
        dest = item["destination"]
        if not dest.startswith("/") or ".." in dest.split("/"):
            raise BundleError(f"{where}: destination must be an absolute path without '..'")
        rel = os.path.relpath(src, bundle.resolve())
        mappings.append(FileMapping("" if rel == "." else rel, os.path.normpath(dest)))

    perms = []
    for i, item in enumerate(data.get("permissions") or []):
        where = f"permissions[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("object"), str) \
                or not item["object"].startswith("/"):
            raise BundleError(f"{where}: needs an absolute object path")
        extra = set(item) - {"object", "pattern", "except", "owner", "group", "mode", "acls",
                             "context", "type"}
        if extra:
            raise BundleError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        types = item.get("type") or ["file", "directory"]
        if isinstance(types, str):
            types = [types]
        if not set(types) <= {"file", "directory"}:
            raise BundleError(f"{where}: type must be file and/or directory")
        perms.append(Permission(os.path.normpath(item["object"]), str(item.get("pattern", "**")),
                                tuple(item.get("except") or ()), item.get("owner"), item.get("group"),
                                _mode(item["mode"], where) if "mode" in item else None, tuple(types)))

    hooks: dict[str, tuple[Script, ...]] = {}
    for event, scripts in (data.get("hooks") or {}).items():
        if event in ("DownloadBundle", "Install"):
            raise BundleError(f"hooks: {event} is the agent's own step; no script can run there")
        if event not in SCRIPT_EVENTS + LOAD_BALANCER_EVENTS:
            raise BundleError(f"hooks: unknown lifecycle event {event!r} (known: "
                              f"{', '.join(SCRIPT_EVENTS + LOAD_BALANCER_EVENTS)})")
        if not isinstance(scripts, list) or not scripts:
            raise BundleError(f"hooks.{event}: expected a list of scripts")
        parsed = []
        for j, s in enumerate(scripts):
            where = f"hooks.{event}[{j}]"
            if not isinstance(s, dict) or not isinstance(s.get("location"), str):
                raise BundleError(f"{where}: needs a location")
            extra = set(s) - {"location", "timeout", "runas"}
            if extra:
                raise BundleError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
            timeout = s.get("timeout", DEFAULT_TIMEOUT)
            if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 3600:
                raise BundleError(f"{where}: timeout must be whole seconds from 1 to 3600")
            runas = s.get("runas")
            if runas is not None:
                try:
                    pwd.getpwnam(str(runas))
                except KeyError:
                    raise BundleError(f"{where}: runas user {runas!r} does not exist on this host") from None
            script = _inside(bundle, s["location"], f"hook {where}")
            check_script(script, f"{where} ({s['location']})")
            parsed.append(Script(event, os.path.relpath(script, bundle.resolve()), timeout,
                                 str(runas) if runas is not None else None))
        hooks[event] = tuple(parsed)
    return AppSpec(tuple(mappings), tuple(perms), hooks, behavior)


def check_script(path: Path, where: str) -> None:
    """A hook script the agent can run: a regular file, executable, LF endings, a #! line."""
    if not path.is_file():
        raise BundleError(f"{where}: script not found in the bundle")
    data = path.read_bytes()
    if b"\r" in data:
        raise BundleError(f"{where}: CRLF line endings (the agent would fail with "
                          f"'/bin/sh^M: bad interpreter'); save it with LF endings")
    if not data.startswith(b"#!"):
        raise BundleError(f"{where}: no #! line")
    if not os.stat(path).st_mode & 0o111:
        raise BundleError(f"{where}: not executable (chmod +x it before bundling)")
