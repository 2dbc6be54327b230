"""Release directories: building one from staging, its record (write_record), listing, pruning
(with the virtualenvs no release uses any more).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
from collections.abc import Sequence

from .. import sizing, subp
from ..facts import systemd
from ..ops.cleanup import Cleanup
from ..state import read_json, write_json
from . import DeployError
from .record import now
from .virtualenvs import ensure_venv

log = logging.getLogger(__name__)

RELEASE_FILE = "bingo-release.json"
PLACEHOLDER = "placeholder"


class Paths:
    """Where an app root keeps its releases, the `current` link, staging, venvs, uv's cache and
    bingo.ini."""

    def __init__(self, root: str):
        self.root = root
        self.releases = f"{root}/releases"
        self.current = f"{root}/current"
        self.staging = f"{root}/staging"
        self.venvs = f"{root}/venvs"
        self.uv_cache = f"{root}/uv-cache"  # the build account's (virtualenvs.py), 0700
        self.shared_ini = f"{root}/shared/bingo.ini"

    def release(self, name: str) -> str:
        return f"{self.releases}/{name}"

    def partial(self, name: str) -> str:
        return f"{self.releases}/.{name}.partial"


# -- records --

def read_record(path: str) -> dict | None:
    return read_json(f"{path}/{RELEASE_FILE}")


def write_record(path: str, record: dict) -> None:
    """`<release>/bingo-release.json` (RELEASE_FILE, schema 1), written atomically, 0644:
        id, deployment_id, application_name, deployment_group  (id: the directory's name)
        bundle              {"type": "s3", "bucket", "key", "version", "etag"} from the agent,
                            {"type": "file", "path", "sha256"} from `bingo-host deploy`, or "unknown"
        revision            what integrity.verify found (freshness.py compares `created`), or null
        created_at          when the build finished (ISO 8601 UTC)
        requirements_hash   sha256 of the interpreter version, every requirements*.txt and
                            app.requirement_overrides (virtualenvs.requirements_hash)
        venv, venv_reused   the shared virtualenv `venv` links to; true when no uv ran for it
        bingo_host_version  the bingo-host that built it
        activated_at, validated_at  last switched to; last passed its checks (or null)
        failed              null, or {"at", "event", "reason"} when it failed or was switched away"""
    write_json(f"{path}/{RELEASE_FILE}", record, "root", "root")


def update_record(paths: Paths, name: str, **changes) -> None:
    path = paths.release(name)
    record = read_record(path)
    if record is not None:
        record.update(changes)
        write_record(path, record)


def current_name(paths: Paths) -> str | None:
    """The name `current` points at (a release id or 'placeholder'), None if it is missing."""
    try:
        target = os.readlink(paths.current)
    except (FileNotFoundError, OSError):
        return None
    return os.path.basename(target.rstrip("/"))


def releases(paths: Paths) -> list[tuple[str, dict]]:
    """Complete releases, oldest first (by created_at, then name)."""
    out = []
    for entry in sorted(os.listdir(paths.releases)) if os.path.isdir(paths.releases) else ():
        if entry.startswith("."):
            continue
        record = read_record(paths.release(entry))
        if record is not None:
            out.append((entry, record))
    return sorted(out, key=lambda item: (item[1].get("created_at") or "", item[0]))


def previous_good(paths: Paths, before: str | None) -> str | None:
    """The newest release older than `before` that once passed its checks and has not failed since."""
    names = [n for n, _ in releases(paths)]
    candidates = releases(paths)
    if before in names:
        candidates = candidates[:names.index(before)]
    for name, record in reversed(candidates):
        if name != before and record.get("validated_at") and not record.get("failed"):
            return name
    return None


# -- the build's scope --

BUILD_CPU_WEIGHT = 20  # services have 100: the build gets a sixth of contested CPU beside one
BUILD_IO_WEIGHT = 20


def build_scope(mem_bytes: int, what: str = "a deployment's virtualenv build") -> list[str]:
    """The command prefix that runs a build step (a new virtualenv, uv compiling mysqlclient on
    a nano) in a transient systemd scope beside the services (system.slice, where weights
    compete), with a fifth of their CPU and IO weight and its memory bounded, so the serving
    release keeps its latency. Output and exit status stay the command's own. Nothing when
    systemd is not running. On cgroup v1 systemd applies the weights as cpu.shares and
    blkio.weight and MemoryMax as memory.limit_in_bytes (MemoryHigh is cgroup v2's only).
    Security updates (patches.py) run in the same kind of scope."""
    if not systemd.booted():
        return []
    return ["systemd-run", "--scope", "--quiet", "--collect",
            f"--description=bingo-host: {what}",
            "-p", f"CPUWeight={BUILD_CPU_WEIGHT}", "-p", f"IOWeight={BUILD_IO_WEIGHT}",
            "-p", f"MemoryHigh={sizing.build_memory_high_mib(mem_bytes)}M",
            "-p", f"MemoryMax={sizing.build_memory_max_mib(mem_bytes)}M", "--"]


# -- building --

def ini_links(release_dir: str) -> list[str]:
    """Where the app looks for bingo.ini, relative to the release: musicbingo/bingo.ini (the
    app reads it from its options package's parent), and next to application.py (older apps)."""
    return ["bingo.ini"] + (["musicbingo/bingo.ini"] if os.path.isdir(f"{release_dir}/musicbingo") else [])


def normalise_tree(top: str) -> None:
    """Release files belong to root and are read-only to everyone else (the app cannot rewrite
    its own code): directories 0755, files 0644, or 0755 when any execute bit was set."""
    for dirpath, dirnames, filenames in os.walk(top):
        os.lchown(dirpath, 0, 0)
        os.chmod(dirpath, 0o755)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, 0, 0)
            if os.path.islink(path) or name in dirnames:
                continue
            os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)


def compile_bytecode(release_dir: str, python: str, scope: Sequence[str] = ()) -> None:
    """The release's own modules compiled once, at build, in `scope`: the app cannot write its
    release, so without this every worker compiled them again at each start. Root runs it:
    compiling parses and writes bytecode, it never runs the code (py_compile), and the build
    account must never write the release (a .pyc of its making would be code no manifest
    covers). compileall follows no link to a directory, and unpacking refused links out of the
    revision. A file that does not compile is left to Python, which compiles it at import."""
    result = subp.run([*scope, python, "-I", "-m", "compileall", "-q", "-j", "0", release_dir],
                      rcs=(0, 1), timeout=600)
    if result.returncode:
        told = (result.stdout + result.stderr).strip().splitlines()
        log.warning(f"release: some modules did not compile ({'; '.join(told[:3])[:300]}); "
                    "Python compiles them at import")


def build(paths: Paths, name: str, record: dict, python: str, app_user: str,
          scope: Sequence[str] = (), overrides: Sequence[str] = ()) -> dict:
    """releases/<name> from the staging directory: code and its bytecode, venv link, bingo.ini
    link, record (the virtualenv built in `scope`, see build_scope(), with `overrides`:
    app.requirement_overrides).

    Built as releases/.<name>.partial and renamed into place last, so releases/<name> exists
    only complete. The serving release is never touched.
    """
    final, partial = paths.release(name), paths.partial(name)
    if current_name(paths) == name:
        raise DeployError(f"release {name} is serving; a deployment cannot rebuild it")
    if not os.path.isfile(f"{paths.staging}/application.py"):
        raise DeployError(f"{paths.staging}/application.py is missing: the Install step copied no "
                          "application (check appspec.yml's files destination)")
    for leftover in (final, partial):
        if os.path.lexists(leftover):
            log.info(f"release: removing leftover {leftover}")
            shutil.rmtree(leftover)
    with Cleanup() as undo:
        os.rename(paths.staging, partial)
        undo.register(shutil.rmtree, partial, ignore_errors=True)
        os.mkdir(paths.staging, 0o755)
        links = ini_links(partial)
        for link in ["venv", *links]:
            if os.path.lexists(f"{partial}/{link}"):
                raise DeployError(f"the revision carries its own {link}; it must not (it is linked in here)")
        compile_bytecode(partial, python, scope)
        normalise_tree(partial)
        venv, digest, reused = ensure_venv(paths.venvs, paths.uv_cache, partial, python, scope,
                                           overrides)
        os.symlink(venv, f"{partial}/venv")
        for link in links:
            os.symlink(paths.shared_ini, f"{partial}/{link}")
        # The app reads bingo.ini (0640, app user) through the link; check it can.
        st = os.stat(paths.shared_ini)
        if st.st_uid != pwd.getpwnam(app_user).pw_uid and st.st_gid != grp.getgrnam(app_user).gr_gid:
            log.warning(f"release: {paths.shared_ini} is not readable by {app_user}")
        record = dict(record, schema=1, id=name, created_at=now(), requirements_hash=digest, venv=venv,
                      venv_reused=reused, activated_at=None, validated_at=None, failed=None)
        write_record(partial, record)
        os.rename(partial, final)
    log.info(f"release: built {final} ({'reused' if reused else 'new'} virtualenv {os.path.basename(venv)})")
    return record


# -- pruning --

def prune(paths: Paths, keep: int, protect: set[str]) -> list[str]:
    """Keep the newest `keep` releases plus `protect` (current, the rollback target); remove
    older ones, half-built ones and virtualenvs no remaining release uses."""
    removed = []
    names = [n for n, _ in releases(paths)]
    keep_set = set(names[-keep:]) | {p for p in protect if p}
    for entry in sorted(os.listdir(paths.releases)):
        path = paths.release(entry)
        if entry in keep_set or not os.path.isdir(path) or os.path.islink(path):
            continue
        if entry.startswith(".") or entry in names or read_record(path) is None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(entry)
    used = set()
    for entry in os.listdir(paths.releases):
        link = f"{paths.release(entry)}/venv"
        if os.path.islink(link):
            used.add(os.path.basename(os.readlink(link).rstrip("/")))
    if os.path.isdir(paths.venvs):
        for entry in sorted(os.listdir(paths.venvs)):
            if entry not in used:
                shutil.rmtree(f"{paths.venvs}/{entry}", ignore_errors=True)
                removed.append(f"venvs/{entry}")
    if removed:
        log.info(f"prune: removed {', '.join(removed)}")
    return removed
