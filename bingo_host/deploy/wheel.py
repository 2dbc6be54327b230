"""The bingo-host wheel `bingo-host bundle` ships: built from this source tree with pip, or, for
an installed copy with no source tree, rebuilt from what pip installed (deterministic like the
bundle); and `bundle` itself, which checks its options and builds the revision with that wheel."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import os
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from .. import subp
from ..errors import BingoHostError, ConfigError
from ..fields import kms_key_arn
from . import BundleError
from .bundle import COMPRESSLEVEL, build_bundle, output_format, zip_entry


#: The .dist-info files a wheel carries (RECORD is written anew); pip's own additions
#: (INSTALLER, REQUESTED, direct_url.json) are left out. The license: dist-info/LICENSE, or
#: dist-info/licenses/LICENSE from a setuptools that follows PEP 639.
DIST_INFO_FILES = ("METADATA", "WHEEL", "entry_points.txt", "top_level.txt", "LICENSE", "licenses")
DATA_SUBDIR = "share/bingo-host/"
TREE = Path(__file__).resolve().parents[2]  # a source tree, if this copy runs from one
PIP_TAIL = 40  # lines of pip's output shown when the build fails

log = logging.getLogger(__name__)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_from_installed(dest: str | Path, dist_name: str = "bingo-host") -> Path:
    """Rebuild the wheel of the installed distribution (no source tree to build one from): its
    package files, its .dist-info (METADATA, WHEEL, entry_points.txt, top_level.txt and a new
    RECORD) and the data files under <prefix>/share/bingo-host, as
    <dest>/bingo_host-<version>-py3-none-any.whl. Deterministic, like the bundle."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise BundleError(f"{dist_name} is not installed and there is no source tree to build its "
                          "wheel from: pass --wheel or --no-wheel") from None
    version = dist.version
    project = dist_name.replace("-", "_")
    files = dist.files or []
    dist_info = f"{project}-{version}.dist-info"
    for f in files:
        if len(f.parts) == 2 and f.parts[0].endswith(".dist-info") and f.parts[1] == "METADATA":
            dist_info = f.parts[0]
    data_dir = f"{project}-{version}.data/data/"
    entries: list[tuple[str, Path]] = []  # (name in the wheel, installed file)
    for f in files:
        posix = f.as_posix()
        if "__pycache__" in f.parts or posix.endswith((".pyc", ".pyo")):
            continue
        if f.parts[0] == dist_info:
            if f.parts[1] in DIST_INFO_FILES:
                entries.append((posix, Path(dist.locate_file(f))))
            continue
        if f.parts[0] == "..":  # outside site-packages: console scripts, data files
            norm = os.path.normpath(posix)
            if f"/{DATA_SUBDIR}" in f"/{norm}":
                rel = norm.split(DATA_SUBDIR, 1)[1]
                entries.append((f"{data_dir}{DATA_SUBDIR}{rel}", Path(dist.locate_file(f))))
            continue  # bin/bingo-host: pip writes it again from entry_points.txt
        if f.parts[0].endswith(".dist-info") or f.parts[0].endswith(".data"):
            continue
        entries.append((posix, Path(dist.locate_file(f))))
    missing = [str(p) for _, p in entries if not p.is_file()]
    if missing:
        raise BundleError(f"the installed {dist_name} {version} is incomplete ({', '.join(missing[:3])} "
                          "missing); reinstall it or pass --wheel")
    if not any(n == f"{dist_info}/METADATA" for n, _ in entries) \
            or not any(n == f"{dist_info}/WHEEL" for n, _ in entries):
        raise BundleError(f"the installed {dist_name} {version} has no METADATA/WHEEL; pass --wheel")
    if not any(n == f"{data_dir}{DATA_SUBDIR}appspec.yml" for n, _ in entries):
        raise BundleError(f"the installed {dist_name} {version} lists no {DATA_SUBDIR}appspec.yml in its "
                          "RECORD; reinstall it from a wheel or pass --wheel")

    def order(entry):  # package files, data, then .dist-info (METADATA first, RECORD last)
        name = entry[0]
        return (name.startswith(dist_info), name.startswith(data_dir), name)

    entries.sort(key=order)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{project}-{version}-py3-none-any.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(out, "w") as zf:
        for name, path in entries:
            data = path.read_bytes()
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            zf.writestr(zip_entry(name, mode, False), data, compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=COMPRESSLEVEL)
            writer.writerow([name, _record_hash(data), len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        zf.writestr(zip_entry(f"{dist_info}/RECORD", 0o644, False), record.getvalue().encode(),
                    compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL)
    return out


def bundle(app_dir: str, out_file: str, fmt: str | None, wheel: str | None, no_wheel: bool,
           sign_key: str | None, application: str | None, deployment_group: str | None) -> Path:
    """Build the revision (deploy.bundle.build_bundle) with the given wheel, none (no_wheel), or
    this copy's own (bingo_host_wheel); a signed one binds application and deployment_group.
    Options that contradict each other are refused before any work."""
    if sign_key is not None:
        kms_key_arn(sign_key, "--sign-key")
    for option, value in (("--application", application), ("--deployment-group", deployment_group)):
        if sign_key is None and value is not None:
            raise ConfigError(option, "binds only a signed revision: give --sign-key too")
        if sign_key is not None and not value:
            raise ConfigError(option, "required with --sign-key (the signature binds the revision "
                                      "to one application and deployment group)")
    fmt = output_format(out_file, fmt)
    with tempfile.TemporaryDirectory() as tmp:
        if not wheel and not no_wheel:
            wheel = bingo_host_wheel(tmp)
        return build_bundle(app_dir, out_file, None if no_wheel else wheel, fmt=fmt, sign_key=sign_key,
                            binding={"application": application, "deployment_group": deployment_group})


def bingo_host_wheel(dest: str, tree: Path | None = None) -> Path:
    """This copy's wheel in dest: built from the source tree it runs from, or rebuilt from the
    installed distribution when there is none. pip takes seconds (a line says so first); when
    it fails, the end of what it said goes to stderr (its last line is "see above"), then one
    error line."""
    tree = tree or TREE
    if not (tree / "setup.cfg").is_file():
        return wheel_from_installed(dest)
    log.info(f"bundle: building the bingo-host wheel from {tree} with pip (some seconds; "
             "--wheel FILE ships a built one)")
    result = subp.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dest, str(tree)],
                      rcs=range(256), timeout=600)
    if not result.ok:
        said = (result.stderr or result.stdout).rstrip().splitlines()[-PIP_TAIL:]
        sys.stderr.write("".join(f"pip: {line}\n" for line in said))
        raise BingoHostError(f"building the bingo-host wheel from {tree} failed (pip exit "
                          f"{result.returncode}{', its output above' if said else ''}): "
                          "pass --wheel FILE or --no-wheel")
    return next(Path(dest).glob("bingo_host-*.whl"))
