"""`bingo-host render`: every managed file written under a directory at its absolute path, plus
manifest.json (path, mode, owner, reload), for review or a diff against a host.

The directory is new, empty or an earlier render (it has manifest.json). Nothing below it is
followed if it is a link: a render run as root must not write through a link someone planted
there into the live files it mirrors. Into an earlier render, the files its manifest listed and
this render does not are removed (only regular files, only those), so the directory is what a
host with this config would hold, not a mix of two configs.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import ConfigError
from .facts import platforms
from .ops import files
from .regular_file import NotRegularFile, read_regular
from .render import render_all
from .resolve import machine_facts, resolve


@dataclass
class Rendered:
    platform: str
    count: int
    diffs: list[str] = field(default_factory=list)  # in a dry run: what would change, as diffs
    removed: list[str] = field(default_factory=list)  # an earlier render's files this one has not


def render_to(cfg: Config, out_dir: Path, platform_name: str | None = None, *,
              dry_run: bool = False, mem_bytes: int | None = None, cpus: int | None = None) -> Rendered:
    """Render cfg (read with load_config(on_host=True)), resolved for platform_name (default: the
    config's) and this host (or the memory and CPUs given: resolve.machine_facts), under out_dir."""
    platform = platforms.get(platform_name or cfg.platform)
    facts, _ = machine_facts(cfg, mem_bytes, cpus)
    managed = render_all(resolve(cfg, platform, facts), platform, facts)
    check_out_dir(out_dir)
    earlier = _listed(out_dir)
    if not dry_run:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = Rendered(platform.name, len(managed))
    manifest = []
    for mf in managed:
        change = _ensure(out_dir, mf.path, mf.content, mf.mode, mf.secret, dry_run)
        if change and dry_run:
            result.diffs.append(change.diff)
        manifest.append({"path": mf.path, "mode": f"{mf.mode:04o}", "owner": mf.owner, "group": mf.group,
                         "on_change": mf.on_change, "template": mf.template})
    for path in sorted(earlier - {mf.path for mf in managed}):
        if _remove(out_dir, path, dry_run):
            result.removed.append(path)
    text = json.dumps({"platform": platform.name, "files": manifest}, indent=2) + "\n"
    _ensure(out_dir, "manifest.json", text, 0o644, False, dry_run)
    return result


def _listed(out_dir: Path) -> set[str]:
    """The paths an earlier render's manifest.json lists (none: no render there, or a manifest
    this code did not write); only absolute paths with no '..' in them."""
    try:
        found = read_regular(out_dir / "manifest.json")
        entries = json.loads(found[0])["files"] if found else []
        paths = {e["path"] for e in entries}
    except (ValueError, TypeError, KeyError, NotRegularFile):
        return set()
    return {p for p in paths if isinstance(p, str) and p.startswith("/") and "/../" not in p + "/"
            and "\0" not in p}


def _remove(out_dir: Path, path: str, dry_run: bool) -> bool:
    """Remove out_dir/path if it is a regular file, reached without following a link; whether
    it was (would be, in a dry run) removed."""
    relative, name = os.path.split(path.lstrip("/"))
    try:
        dir_fd = files.open_beneath(out_dir, relative, create=False)
    except (FileNotFoundError, files.NotRegularFile):
        return False
    try:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        if not dry_run:
            os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError as exc:
        raise _named(exc, out_dir / path.lstrip("/")) from None
    finally:
        os.close(dir_fd)


def _named(exc: OSError, path: Path) -> OSError:
    """exc, naming the whole path below OUT (the calls under a directory descriptor name only
    the last part)."""
    return type(exc)(exc.errno, exc.strerror, str(path))


def _ensure(out_dir: Path, path: str, content: str, mode: int, secret: bool, dry_run: bool):
    """Write path's content below out_dir unless it is there already; the change (None: none)."""
    relative, name = os.path.split(path.lstrip("/"))
    try:
        dir_fd = files.open_beneath(out_dir, relative, create=not dry_run)
    except FileNotFoundError:  # dry run, nothing rendered there yet
        return files.plan(out_dir / path.lstrip("/"), content, mode, secret=secret)
    except files.NotRegularFile as exc:
        raise ConfigError("--out", f"{out_dir}: {exc.filename} under it is "
                                   f"{exc.strerror}: not following it") from None
    except OSError as exc:
        raise _named(exc, out_dir / path.lstrip("/")) from None
    try:
        change = files.plan(name, content, mode, secret=secret, dir_fd=dir_fd)
        if change and not dry_run:
            files.write_atomic(name, content, mode, dir_fd=dir_fd)
        return change
    except OSError as exc:
        raise _named(exc, out_dir / path.lstrip("/")) from None
    finally:
        os.close(dir_fd)


def check_out_dir(out_dir: Path) -> None:
    """out_dir must be no link, and new, empty or an earlier render (a regular manifest.json)."""
    try:
        st = os.lstat(out_dir)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError("--out", f"{out_dir} is a symbolic link or not a directory")
    try:
        manifest = os.lstat(out_dir / "manifest.json")
    except FileNotFoundError:
        manifest = None
    with os.scandir(out_dir) as entries:
        empty = next(entries, None) is None
    if not empty and not (manifest and stat.S_ISREG(manifest.st_mode)):
        raise ConfigError("--out", f"{out_dir} is not empty and not an earlier render (no "
                                   "manifest.json): give a new or empty directory")
