"""`bingo-host bundle`: the CodeDeploy revision (musicbingo-prod.zip) from a music bingo checkout:
the built client, the app's package and production requirement files, bingo-host's appspec.yml,
hooks/ and wheel (so BeforeInstall can upgrade bingo-host first), and bingo-manifest.json with,
given --sign-key, its KMS signature (integrity.py).

A zip by default (CodePipeline hands the CodeDeploy action a zip; a tar.gz fails there), or a
tar.gz. Either is deterministic (entries sorted, times, owners, modes and compression fixed), so
the same inputs give the same bytes; a signed manifest's `created` is the build's time unless
$SOURCE_DATE_EPOCH sets it (an RSA PKCS#1 v1.5 signature is deterministic, ECDSA's is not).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from ..errors import BingoHostError
from ..ops.cleanup import Cleanup
from . import BundleError, appspec, integrity
from .archive import extract
from .virtualenvs import requirement_files

log = logging.getLogger(__name__)

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z: zip-safe, far from 0
ZIP_DATE_TIME = (2000, 1, 1, 0, 0, 0)
COMPRESSLEVEL = 9
FORMATS = ("zip", "tgz")


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
    for req in requirement_files(str(app)):
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


def _tarinfo(name: str, src: Path | bytes, is_dir: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = len(src) if isinstance(src, bytes) else src.stat().st_size
        info.mode = _mode(name, src, False)
    return info


def _read(src: Path | bytes) -> bytes:
    """An entry's content: a file's, or bytes made here (the manifest and its signature)."""
    return src if isinstance(src, bytes) else src.read_bytes()


def output_format(out: str | Path, fmt: str | None) -> str:
    """The archive format: --format, else from --out's suffix (.tar.gz/.tgz: tgz, else zip).
    A --format that contradicts the suffix is refused (BundleError, exit 2)."""
    name = str(out).lower()
    implied = "tgz" if name.endswith((".tar.gz", ".tgz")) else "zip" if name.endswith(".zip") else None
    if fmt is None:
        return implied or "zip"
    if fmt not in FORMATS:
        raise BundleError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if implied and implied != fmt:
        raise BundleError(f"--format {fmt} contradicts --out {out} (a {implied} name); name the output "
                          f"{'*.zip' if fmt == 'zip' else '*.tar.gz'} or drop --format")
    return fmt


def _mode(name: str, src: Path | bytes, is_dir: bool) -> int:
    if is_dir:
        return 0o755
    if isinstance(src, bytes):
        return 0o644
    executable = src.stat().st_mode & 0o111 or name.startswith("hooks/")  # data files lose +x
    return 0o755 if executable else 0o644


def _write_tgz(entries, f) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, path, is_dir in entries:
            info = _tarinfo(name, path, is_dir)
            if is_dir:
                tf.addfile(info)
            else:
                tf.addfile(info, io.BytesIO(_read(path)))
    with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=COMPRESSLEVEL) as gz:
        gz.write(raw.getvalue())


def zip_entry(name: str, mode: int, is_dir: bool) -> zipfile.ZipInfo:
    """A deterministic zip entry that carries its unix mode (`unzip` restores it)."""
    zi = zipfile.ZipInfo(name + "/" if is_dir else name, date_time=ZIP_DATE_TIME)
    zi.create_system = 3  # unix: external_attr holds st_mode
    zi.external_attr = ((stat.S_IFDIR if is_dir else stat.S_IFREG) | mode) << 16
    zi.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return zi


def _write_zip(entries, f) -> None:
    with zipfile.ZipFile(f, "w") as zf:
        for name, path, is_dir in sorted(entries, key=lambda e: e[0] + "/" if e[2] else e[0]):
            zi = zip_entry(name, _mode(name, path, is_dir), is_dir)
            if is_dir:
                zf.writestr(zi, b"")
            else:
                zf.writestr(zi, _read(path), compress_type=zipfile.ZIP_DEFLATED,
                            compresslevel=COMPRESSLEVEL)


def created_now() -> str:
    """A signed manifest's `created`: now, or $SOURCE_DATE_EPOCH (reproducible builds), UTC."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise BundleError(f"SOURCE_DATE_EPOCH {epoch[:20]!r}: not a number of seconds")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch else time.time()))


def _manifest_entries(entries, sign_key: str | None, binding: dict | None = None) -> list:
    """bingo-manifest.json over entries, and bingo-manifest.sig when sign_key is given (binding:
    the application and deployment group it is signed for)."""
    files = [(name, hashlib.sha256(_read(src)).hexdigest(), _mode(name, src, False))
             for name, src, is_dir in entries if not is_dir]
    dirs = [(name, _mode(name, src, True)) for name, src, is_dir in entries if is_dir]
    if sign_key:
        binding = dict(binding or {}, created=created_now())
        missing = [k for k in ("application", "deployment_group") if not binding.get(k)]
        if missing:
            raise BundleError(f"--sign-key needs --{missing[0].replace('_', '-')}: a signature binds "
                              "the revision to one CodeDeploy application and deployment group")
    else:
        binding = None  # unsigned, nothing is bound: the manifest names no application
    algorithm = integrity.signing_algorithm(sign_key) if sign_key else None
    data = integrity.manifest(files, dirs, sign_key, algorithm, binding)
    out = [(integrity.MANIFEST, data, False)]
    if sign_key:
        out.append((integrity.SIGNATURE, integrity.sign(data, sign_key, algorithm), False))
    return out


def build_bundle(app: str | Path, out: str | Path, wheel: str | Path | None,
                 fmt: str | None = None, sign_key: str | None = None,
                 binding: dict | None = None) -> Path:
    """Write the revision to out (zip or tgz: fmt, else from out's suffix), with its manifest,
    signed with the KMS key sign_key (an ARN) when given, for binding's application and
    deployment_group (both required with sign_key); the path."""
    app, out = Path(app).resolve(), Path(out)
    fmt = output_format(out, fmt)
    wheel = Path(wheel).resolve() if wheel else None
    if wheel is not None and not (wheel.is_file() and wheel.name.startswith("bingo_host-")
                                  and wheel.suffix == ".whl"):
        raise BundleError(f"{wheel}: not a bingo_host-*.whl file")
    entries = []
    for name, path in _collect(app, wheel):
        if path.is_symlink():
            raise BundleError(f"{path}: symbolic links are not bundled")
        entries.append((name, path, name == "bingo-host" or path.is_dir()))
    entries = sorted(entries + _manifest_entries(entries, sign_key, binding), key=lambda e: e[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with Cleanup() as undo:
        undo.register(tmp.unlink, missing_ok=True)
        with open(tmp, "wb") as f:
            (_write_zip if fmt == "zip" else _write_tgz)(entries, f)
        # The bundle must pass the same checks (and extraction) `deploy` applies.
        _check_bundle(tmp)
        os.replace(tmp, out)
    files = sum(1 for _, _, is_dir in entries if not is_dir)
    signed = (f", signed with {sign_key} for {binding.get('application')}/"
              f"{binding.get('deployment_group')}" if sign_key and binding else ", unsigned")
    log.info(f"bundle: {out} ({fmt}, {files} files, {out.stat().st_size} bytes"
             f"{'' if wheel else ', no bingo-host wheel'}"
             f"{signed})")
    return out


def _check_bundle(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        extract(str(out), f"{tmp}/archive")
        appspec.load(Path(tmp) / "archive")
        # What a host will find: the manifest matches the unpacked files, hashes and modes.
        _, parsed = integrity.load_manifest(f"{tmp}/archive/{integrity.MANIFEST}")
        integrity.check_tree(f"{tmp}/archive", parsed["entries"])
