"""Release directories: where they live, their records, which one serves, listing and pruning
(with the virtualenvs no release uses any more). Building one is release_build.py."""

from __future__ import annotations

import logging
import os
import shutil

from ..state import read_json, write_json

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
