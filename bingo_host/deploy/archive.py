"""Unpacking a revision the way the CodeDeploy agent does, refusing anything that could leave it.

A zip is unpacked like the agent's `unzip -qo`, a tar like `tar -xp`, a directory revision copied
through the same checks. Entries are made one by one, each joined to the real destination with
every link made so far resolved, so a chain of links (`sub/l1 -> ..`, `sub/l1/l2 -> ..`, then
`l2/l3/x`) cannot carry a later entry outside. Refused, naming the entry: what the README's
"Revisions: unpacked safely, signed" lists; setuid/setgid/sticky bits are refused, since
stripping them would hide it. Sizes are counted as bytes are written, a tar's headers checked as
they stream (tar_headers.py). Owners are never applied: every entry is the unpacker's (root's on
a host). A refused archive leaves only dest, which callers remove.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import time
import zipfile
import zlib

from . import BundleError
from . import agent
from .tar_headers import BLOCK, HeaderGuard, is_header

MAX_ENTRIES = 20000
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_ARCHIVE_BYTES = MAX_TOTAL_BYTES + 64 * 1024 * 1024  # the archive file itself
CHUNK = 1 << 20


def bundle_type(path: str) -> str:
    """'zip', 'tgz' or 'tar', from the file's content (its name does not matter): a tar is one
    whose first block is a header with a valid checksum (tarfile.is_tarfile would read it, and any
    long name it announces, whole)."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLOCK)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read it: {exc}") from None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tgz"
    if is_header(head):
        return "tar"
    raise BundleError(f"{path}: not a zip, tar.gz or tar archive (nor a directory)")


class _Unpacker:
    """Creates entries under base in order; every path is resolved against the disk as it is."""

    def __init__(self, archive: str, base: str):
        self.archive, self.base = archive, base
        self.entries = 0
        self.written = 0
        self.regular: set[str] = set()  # files this archive wrote: the only hard link targets
        self.links: list[tuple[str, str]] = []  # (name, path): checked again at the end
        self.dirs: list[tuple[str, int]] = []  # modes applied last, like tar and unzip

    def refuse(self, name: str, why: str):
        raise BundleError(f"{self.archive}: member {name!r} {why}")

    def _inside(self, real: str) -> bool:
        return real == self.base or real.startswith(self.base + "/")

    def count(self, name: str) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            self.refuse(name, f"is one too many: a revision may hold at most {MAX_ENTRIES} entries")

    def check_mode(self, name: str, mode: int) -> None:
        if mode & 0o7000:
            self.refuse(name, f"has the setuid, setgid or sticky bit (mode {mode & 0o7777:04o}); "
                              "a revision never needs them")

    def path(self, name: str, entry: str | None = None) -> str:
        """Where name goes: its parent resolved (links created so far followed) and inside base,
        created if missing; base itself for '.'. Errors name entry (default: name)."""
        entry = name if entry is None else entry
        if not name or "\0" in name or name.startswith("/") \
                or ".." in name.replace("\\", "/").split("/"):
            self.refuse(entry, f"points outside the bundle ({name!r}: an absolute name or '..')")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            return self.base
        parent = os.path.realpath(os.path.join(self.base, *parts[:-1]))
        if not self._inside(parent):
            self.refuse(entry, f"points outside the bundle (through a symbolic link, to {parent})")
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            self.refuse(entry, f"cannot be created: {exc.strerror}")
        return os.path.join(parent, parts[-1])

    def _clear(self, name: str, path: str) -> None:
        """An earlier entry at path is replaced, as tar and `unzip -o` replace it (not a directory)."""
        if os.path.isdir(path) and not os.path.islink(path):
            self.refuse(name, "is not a directory, but an earlier entry made it one")
        if os.path.lexists(path):
            os.unlink(path)
        self.regular.discard(path)

    def directory(self, name: str, mode: int) -> None:
        path = self.path(name)
        if os.path.islink(path):
            os.unlink(path)
        if not os.path.isdir(path):
            self._clear(name, path)
            os.mkdir(path, 0o700)
        self.dirs.append((path, mode))

    def file(self, name: str, mode: int, src, mtime: float) -> None:
        path = self.path(name)
        self._clear(name, path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as dst:
            while chunk := src.read(CHUNK):
                self.written += len(chunk)
                if self.written > MAX_TOTAL_BYTES:
                    self.refuse(name, f"takes the revision past {MAX_TOTAL_BYTES // (1 << 20)} MiB "
                                      "unpacked (a revision may not be larger)")
                dst.write(chunk)
            os.fchmod(dst.fileno(), mode)
        os.utime(path, (mtime, mtime))
        self.regular.add(path)

    def symlink(self, name: str, target: str) -> None:
        path = self.path(name)
        if target.startswith("/"):
            self.refuse(name, f"is a symbolic link that points outside the bundle (to the absolute "
                              f"path {target!r})")
        resolved = os.path.realpath(os.path.join(os.path.dirname(path), target))
        if not self._inside(resolved):
            self.refuse(name, f"is a symbolic link that points outside the bundle ({target!r} "
                              f"resolves to {resolved})")
        if os.path.isdir(resolved):
            self.refuse(name, f"is a symbolic link to a directory ({target!r}); only links to files "
                              "are allowed")
        self._clear(name, path)
        os.symlink(target, path)
        self.links.append((name, path))

    def hardlink(self, name: str, target: str) -> None:
        source = self.path(target, name)
        if source not in self.regular or not stat.S_ISREG(os.lstat(source).st_mode):
            self.refuse(name, f"is a hard link to {target!r}, which is not a regular file "
                              "this archive unpacked before it")
        path = self.path(name)
        self._clear(name, path)
        os.link(source, path, follow_symlinks=False)
        self.regular.add(path)

    def finish(self) -> None:
        """Links are checked again with every entry in place (a later entry can make a link that
        was harmless when created point elsewhere), then directory modes are applied."""
        for name, path in self.links:
            if not os.path.islink(path):
                continue
            resolved = os.path.realpath(path)
            if not self._inside(resolved) or os.path.isdir(resolved):
                self.refuse(name, f"is a symbolic link that now resolves to {resolved} (outside the "
                                  "bundle or a directory) once every entry is unpacked")
        for path, mode in reversed(self.dirs):  # last: a 0555 directory can be filled
            os.chmod(path, mode)


def _extract_tar(archive: str, out: _Unpacker, compressed: bool) -> None:
    """Streamed ('r|'): tarfile reads the decompressed bytes once, in order, through HeaderGuard."""
    try:
        with open(archive, "rb") as raw, \
                (gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw) as stream, \
                tarfile.open(fileobj=HeaderGuard(stream, archive, MAX_TOTAL_BYTES), mode="r|") as tf:
            for m in tf:
                name = m.name
                out.count(name)
                if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
                    out.refuse(name, "is not a file, directory or link (devices and FIFOs are "
                                     "not allowed)")
                out.check_mode(name, m.mode)
                if m.isdir():
                    out.directory(name, m.mode & 0o777)
                elif m.issym():
                    out.symlink(name, m.linkname)
                elif m.islnk():
                    out.hardlink(name, m.linkname)
                else:
                    with tf.extractfile(m) as src:
                        out.file(name, m.mode & 0o777, src, m.mtime)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BundleError(f"{archive}: cannot be unpacked: {exc}") from None


def _extract_zip(archive: str, out: _Unpacker) -> None:
    """Like the agent's `unzip -qo`: unix modes from the entries, the umask's defaults for
    entries without one."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{archive}: not a readable zip archive: {exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                out.refuse(infos[MAX_ENTRIES].filename, f"is one too many: a revision may hold at "
                                                        f"most {MAX_ENTRIES} entries")
            claimed = sum(zi.file_size for zi in infos)
            if claimed > MAX_TOTAL_BYTES:
                raise BundleError(f"{archive}: unpacks to {claimed} bytes, more than a revision may "
                                  f"({MAX_TOTAL_BYTES // (1 << 20)} MiB)")
            for zi in infos:
                name = zi.filename
                out.count(name)
                mode = zi.external_attr >> 16 if zi.create_system == 3 else 0
                kind = stat.S_IFMT(mode)
                if stat.S_ISLNK(mode):
                    out.refuse(name, "is a symbolic link (not allowed in a zip bundle)")
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    out.refuse(name, "is not a file or directory (devices and FIFOs are not allowed)")
                out.check_mode(name, mode)
                is_dir = name.endswith("/") or kind == stat.S_IFDIR
                perms = (mode & 0o777) if mode & 0o777 else ((0o777 if is_dir else 0o666) & ~umask)
                if is_dir:
                    out.directory(name, perms)
                    continue
                with zf.open(zi) as src:
                    out.file(name, perms, src, time.mktime(zi.date_time + (0, 0, -1)))
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error) as exc:
        raise BundleError(f"{archive}: cannot be unpacked: {exc}") from None


def _copy_dir(source: str, out: _Unpacker) -> None:
    """A directory revision, entry by entry through the unpacker: nothing in it is followed (a link
    is copied as a link, with the checks a tar's gets), files are opened without following links."""
    top = os.path.realpath(source)
    if out.base == top or out.base.startswith(top + "/"):
        raise BundleError(f"{source}: holds the directory it would be copied to ({out.base})")
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top)
        for entry in sorted(dirnames + filenames):
            path = os.path.join(dirpath, entry)
            name = entry if rel_dir == "." else f"{rel_dir}/{entry}"
            st = os.lstat(path)
            out.count(name)
            out.check_mode(name, st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.symlink(name, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out.directory(name, st.st_mode & 0o777)
            elif stat.S_ISREG(st.st_mode):
                with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as src:
                    if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                        out.refuse(name, "changed while it was copied")
                    out.file(name, st.st_mode & 0o777, src, st.st_mtime)
            else:
                out.refuse(name, "is not a file, directory or link (devices, FIFOs and sockets "
                                 "are not allowed)")


def extract(archive: str, dest: str) -> str:
    """Unpack a zip, tar.gz or tar revision, or copy a directory one, into dest (created) with the
    checks above; its type ('zip', 'tgz', 'tar', 'directory'). On a BundleError dest may hold part
    of it."""
    is_dir = os.path.isdir(archive)
    kind = "directory" if is_dir else bundle_type(archive)
    if not is_dir and (size := os.path.getsize(archive)) > MAX_ARCHIVE_BYTES:
        raise BundleError(f"{archive}: {size} bytes, more than a revision may be "
                          f"({MAX_ARCHIVE_BYTES // (1 << 20)} MiB)")
    os.makedirs(dest, exist_ok=True)
    out = _Unpacker(archive, os.path.realpath(dest))
    try:
        if is_dir:
            _copy_dir(archive, out)
        elif kind == "zip":
            _extract_zip(archive, out)
        else:
            _extract_tar(archive, out, kind == "tgz")
    except OSError as exc:
        raise BundleError(f"{archive}: cannot be unpacked: {exc}") from None
    out.finish()
    if not is_dir:
        agent.strip_leading_directory(out.base)
    return kind
