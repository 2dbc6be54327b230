"""A tar stream's headers, checked as the bytes pass and before tarfile reads them.

tarfile reads a GNU long name or a PAX header whole into memory, follows a run of them by
recursion, and takes an unreadable header after the first as the end of the archive: a 1 MiB
tar.gz could take it past 2 GiB before any signature was checked, and a corrupt header could end
a revision early without a word. HeaderGuard parses every 512-byte header itself, so a refusal
(BundleError naming the offset) comes before tarfile has the bytes. uid, gid and owner names are
only checked to be sane: they are never applied (archive.py).
"""

from __future__ import annotations

import re
import tarfile

from . import BundleError

BLOCK = 512
MAX_META_BYTES = 64 * 1024
MAX_META_TOTAL = 8 * 1024 * 1024
MAX_MTIME = 2 ** 33  # the year 2242
MAX_ID = 2 ** 32
MAX_MODE = 0o10000000
META = {b"L": "L", b"K": "K", b"x": "x", b"X": "x", b"g": "g"}  # kind: one of each per member
DATA = (b"0", b"\0", b"7")  # regular files: their data follows
NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, FIFOs: none
PAX_RECORD = re.compile(rb"([1-9][0-9]{0,5}) ([^=\n]+)=")
PAX_TIME = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
PAX_INT = re.compile(r"[0-9]{1,20}")


def is_header(block: bytes) -> bool:
    """Whether block is a tar header (a full block whose checksum is right)."""
    try:
        return len(block) == BLOCK and tarfile.nti(block[148:156]) in tarfile.calc_chksums(block)
    except (tarfile.HeaderError, ValueError):
        return False


class HeaderGuard:
    """A file object over a decompressed tar stream that refuses a hostile header as it passes:
    - a metadata header over MAX_META_BYTES, more than MAX_META_TOTAL in all, or two of one kind
      before the same member (tarfile would let the outer one win);
    - a bad checksum, a number tarfile cannot read, a size below 0 or above max_data, an mtime
      outside [0, MAX_MTIME), a uid or gid outside [0, 2**32), a mode above 0o7777777;
    - a PAX record that does not parse or holds such a number, a GNU sparse map or file, a size in
      a global header;
    - a type tarfile skips otherwise than by its size (a link, directory or device with data, an
      unknown type), so guard and tarfile always agree on where the next header is;
    - a stream that ends inside a header or a member, or without the end-of-archive block.

    max_data: the most member data (the sum of sizes) the archive may declare."""

    def __init__(self, raw, archive: str, max_data: int):
        self.raw, self.archive, self.max_data = raw, archive, max_data
        self.pos = 0  # bytes read so far
        self.next_header = 0  # where the next header starts
        self.header = b""  # the part of that header read so far
        self.meta = None  # a metadata header's data while it is read (with meta_left, _kind, _offset)
        self.pending = {}  # metadata kinds seen since the last member: their offsets
        self.pax_size = None  # the next member's size, from its 'x' header
        self.meta_total = 0
        self.data_total = 0
        self.ended = False

    def refuse(self, offset: int, why: str):
        raise BundleError(f"{self.archive}: tar header at byte {offset} {why}")

    def read(self, size: int) -> bytes:
        data = self.raw.read(size)
        if data:
            self._inspect(data)
        elif not self.ended:
            self.refuse(self.next_header, "is missing: the archive ends inside a member or "
                                          "without its end-of-archive block (truncated?)")
        return data

    def _inspect(self, data: bytes) -> None:
        start, end = self.pos, self.pos + len(data)
        self.pos = end
        at = start
        while not self.ended and at < end:
            if self.meta is not None and at < self.next_header:
                take = data[at - start:min(end, at + self.meta_left) - start]
                self.meta += take
                self.meta_left -= len(take)
                at += len(take)
                if self.meta_left == 0:
                    self._metadata()
                continue
            if at < self.next_header:
                at = min(end, self.next_header)
                continue
            take = data[at - start:min(end, at + BLOCK - len(self.header)) - start]
            self.header += take
            at += len(take)
            if len(self.header) == BLOCK:
                header, self.header = self.header, b""
                self._header(header, self.next_header)

    @staticmethod
    def _block(size: int) -> int:
        return -(-size // BLOCK) * BLOCK

    def _number(self, header: bytes, offset: int, field: str, lo: int, hi: int) -> int:
        start, length = {"mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12),
                         "mtime": (136, 12), "checksum": (148, 8), "devmajor": (329, 8),
                         "devminor": (337, 8)}[field]
        try:
            value = tarfile.nti(header[start:start + length])
        except (tarfile.HeaderError, ValueError):
            self.refuse(offset, f"has an unreadable {field} field")
        if not lo <= value < hi:
            self.refuse(offset, f"has {field} {value}, outside [{lo}, {hi})")
        return value

    def _header(self, header: bytes, offset: int) -> None:
        if header.count(0) == BLOCK:
            if self.pending:
                self.refuse(offset, "ends the archive right after a metadata header")
            self.ended = True
            return
        checksum = self._number(header, offset, "checksum", 0, MAX_ID)
        if checksum not in tarfile.calc_chksums(header):
            self.refuse(offset, "has a bad checksum (a corrupt or forged archive)")
        self._number(header, offset, "mode", 0, MAX_MODE)
        self._number(header, offset, "uid", 0, MAX_ID)
        self._number(header, offset, "gid", 0, MAX_ID)
        self._number(header, offset, "mtime", 0, MAX_MTIME)
        self._number(header, offset, "devmajor", 0, MAX_ID)
        self._number(header, offset, "devminor", 0, MAX_ID)
        size = self._number(header, offset, "size", 0, 2 ** 63)
        kind = header[156:157]
        if kind in META:
            self._start_metadata(offset, META[kind], size)
            return
        if kind == b"\0" and header[:100].split(b"\0", 1)[0].endswith(b"/"):
            kind = b"5"  # tarfile reads a V7 name ending in '/' as a directory
        if self.pax_size is not None:
            size = self.pax_size
        if kind in NO_DATA and size:
            self.refuse(offset, f"is a link, directory or device (type {kind.decode()!r}) with "
                                f"{size} bytes of data")
        if kind not in DATA + NO_DATA:
            self.refuse(offset, f"has type {kind!r}: not a file, directory or link (GNU sparse "
                                "files, volume labels and other types are not allowed)")
        self.data_total += size
        if self.data_total > self.max_data:
            self.refuse(offset, f"takes the revision past {self.max_data // (1 << 20)} MiB unpacked "
                                "(a revision may not be larger)")
        self.pending, self.pax_size = {}, None
        self.next_header = offset + BLOCK + self._block(size)

    def _start_metadata(self, offset: int, kind: str, size: int) -> None:
        if kind in self.pending:
            self.refuse(offset, f"is a second {kind!r} metadata header for the same member")
        if size > MAX_META_BYTES:
            self.refuse(offset, f"is a {kind!r} metadata header of {size} bytes, more than "
                                f"{MAX_META_BYTES} (a long name or PAX header is never that large)")
        self.meta_total += size
        if self.meta_total > MAX_META_TOTAL:
            self.refuse(offset, f"takes the metadata headers past {MAX_META_TOTAL} bytes in all")
        self.pending[kind] = offset
        self.next_header = offset + BLOCK + self._block(size)
        self.meta, self.meta_left, self.meta_kind, self.meta_offset = b"", size, kind, offset
        if size == 0:
            self._metadata()

    def _metadata(self) -> None:
        data, self.meta = self.meta, None
        if self.meta_kind in ("x", "g"):
            self._pax(data, self.meta_offset, self.meta_kind == "g")

    def _pax(self, data: bytes, offset: int, is_global: bool) -> None:
        """PAX records, strictly: `<length> <key>=<value>\\n` each, covering the data exactly."""
        pos = 0
        while pos < len(data):
            match = PAX_RECORD.match(data, pos)
            length = int(match.group(1)) if match else 0
            if not match or pos + length > len(data) or data[pos + length - 1:pos + length] != b"\n" \
                    or match.end() > pos + length:
                self.refuse(offset, f"has a PAX record that does not parse (at {pos})")
            key = match.group(2).decode("utf-8", "replace")
            value = data[match.end():pos + length - 1].decode("utf-8", "replace")
            self._pax_value(offset, key, value, is_global)
            pos += length

    def _pax_value(self, offset: int, key: str, value: str, is_global: bool) -> None:
        if key.startswith("GNU.sparse."):
            self.refuse(offset, f"has PAX record {key}: GNU sparse files are not allowed")
        if key in ("mtime", "atime", "ctime"):
            if not PAX_TIME.fullmatch(value) or not float(value) < MAX_MTIME:
                self.refuse(offset, f"has PAX {key} {value[:40]!r}, not a time in [0, {MAX_MTIME})")
        elif key in ("uid", "gid", "size"):
            hi = self.max_data + 1 if key == "size" else MAX_ID
            if not PAX_INT.fullmatch(value) or not int(value) < hi:
                self.refuse(offset, f"has PAX {key} {value[:40]!r}, not a number in [0, {hi})")
            if key == "size":
                if is_global:
                    self.refuse(offset, "sets a size in a global PAX header")
                self.pax_size = int(value)
