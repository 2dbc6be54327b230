"""`bingo-host bundle`: the CodeDeploy revision (musicbingo-prod.tar.gz) from a music bingo checkout.

    build/            <- client/build/ (the built React client)
    musicbingo/       the Python package
    application.py
    requirements*.txt
    Extra-Files/      when present
    appspec.yml, hooks/          bingo-host's (the source tree's, or the copy in the wheel)
    bingo-host/bingo_host-*.whl  so BeforeInstall can upgrade bingo-host first

Deterministic: entries sorted, mtime/uid/gid fixed, owner names empty, modes normalised
(0755 for directories and executables, 0644 otherwise), gzip header mtime 0 and no file name.
The same inputs give the same bytes.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

from ..errors import BingoHostError
from . import BundleError, appspec

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z: zip-safe, far from 0


def revision_files_dir() -> Path:
    """Where appspec.yml and hooks/ are: the source tree, or <prefix>/share/bingo-host (wheel)."""
    tree = Path(__file__).resolve().parents[2]
    if (tree / "appspec.yml").is_file() and (tree / "hooks").is_dir():
        return tree
    shared = Path(sys.prefix) / "share" / "bingo-host"
    if (shared / "appspec.yml").is_file():
        return shared
    raise BingoHostError("appspec.yml and hooks/ not found (neither in a source tree nor in "
                         f"{shared}); reinstall bingo-host")


def _collect(app: Path, wheel: Path | None) -> list[tuple[str, Path]]:
    """(archive name, source path) for every file and directory, sorted."""
    if not (app / "application.py").is_file():
        raise BundleError(f"{app}: no application.py (is it a music bingo checkout?)")
    if not (app / "requirements.txt").is_file():
        raise BundleError(f"{app}: no requirements.txt")
    build = app / "client" / "build"
    if not (build / "index.html").is_file():
        raise BundleError(f"{app}: client/build/index.html is missing; build the client first "
                          "(npm run build in client/)")
    entries: list[tuple[str, Path]] = []

    def add_tree(src: Path, name: str) -> None:
        entries.append((name, src))
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "node_modules"))
            for d in dirnames:
                p = Path(dirpath) / d
                entries.append((f"{name}/{p.relative_to(src).as_posix()}", p))
            for f in sorted(filenames):
                if f.endswith((".pyc", ".pyo")):
                    continue
                p = Path(dirpath) / f
                entries.append((f"{name}/{p.relative_to(src).as_posix()}", p))

    add_tree(build, "build")
    if (app / "musicbingo").is_dir():
        add_tree(app / "musicbingo", "musicbingo")
    if (app / "Extra-Files").is_dir():
        add_tree(app / "Extra-Files", "Extra-Files")
    entries.append(("application.py", app / "application.py"))
    for req in sorted(glob.glob(str(app / "requirements*.txt"))):
        entries.append((os.path.basename(req), Path(req)))
    rev = revision_files_dir()
    entries.append(("appspec.yml", rev / "appspec.yml"))
    add_tree(rev / "hooks", "hooks")
    if wheel is not None:
        entries.append(("bingo-host", wheel.parent))  # directory entry only
        entries.append((f"bingo-host/{wheel.name}", wheel))
    seen = set()
    for name, _ in entries:
        if name in seen:
            raise BundleError(f"{name} would be in the bundle twice")
        seen.add(name)
    return sorted(entries, key=lambda e: e[0])


def _tarinfo(name: str, path: Path, is_dir: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = path.stat().st_size
        executable = path.stat().st_mode & 0o111 or name.startswith("hooks/")  # data files lose +x
        info.mode = 0o755 if executable else 0o644
    return info


def build_bundle(app: str | Path, out: str | Path, wheel: str | Path | None, echo=print) -> Path:
    app, out = Path(app).resolve(), Path(out)
    wheel = Path(wheel).resolve() if wheel else None
    if wheel is not None and not (wheel.is_file() and wheel.name.startswith("bingo_host-")
                                  and wheel.suffix == ".whl"):
        raise BundleError(f"{wheel}: not a bingo_host-*.whl file")
    entries = _collect(app, wheel)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, path in entries:
            is_dir = name == "bingo-host" or (path.is_dir() and not path.is_symlink())
            if path.is_symlink():
                raise BundleError(f"{path}: symbolic links are not bundled")
            info = _tarinfo(name, path, is_dir)
            if is_dir:
                tf.addfile(info)
            else:
                with open(path, "rb") as f:
                    tf.addfile(info, f)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(raw.getvalue())
    os.replace(tmp, out)
    # The bundle must pass the same checks `deploy` and the agent apply.
    _check_bundle(out)
    files = sum(1 for name, p in entries if not (name == "bingo-host" or p.is_dir()))
    echo(f"bundle: {out} ({files} files, {out.stat().st_size} bytes"
         f"{'' if wheel else ', no bingo-host wheel'})")
    return out


def _check_bundle(out: Path) -> None:
    import tempfile

    from .lifecycle import _safe_extract

    with tempfile.TemporaryDirectory() as tmp:
        _safe_extract(str(out), tmp)
        appspec.load(Path(tmp))
