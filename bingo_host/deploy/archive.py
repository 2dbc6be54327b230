"""Unpacking a revision the way the CodeDeploy agent does, checked before anything is written.

A zip is unpacked like the agent's `unzip -qo`, a tar like `tar -xp`, and a lone top-level
directory holding an appspec becomes the revision's root, as under the agent. Every member is
checked first (nothing outside the destination, no device files), so a hostile bundle writes
nothing. `bingo-host deploy` unpacks with it and `bingo-host bundle` checks what it wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import time
import zipfile

from . import BundleError


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
