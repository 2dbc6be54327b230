"""The dump as a stream: gzip on the way out with row counting, gunzip on the way in with checks.

Row counts come from the INSERT statements mariadb-dump writes: a string value never spans a
line (mariadb-dump escapes newlines), so stripping the quoted strings from each line leaves one
'(' per row, whether the dump puts rows on one line (older clients) or one a line (10.11).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Iterable, Iterator

from . import BackupError

CHUNK = 256 * 1024
TRAILER = b"-- Dump completed"  # mariadb-dump's last line (with --comments, its default)
_STRING = re.compile(rb"'(?:[^'\\]|\\.|'')*'")
_IDENT = rb"`((?:[^`]|``)+)`"
_INSERT = re.compile(rb"INSERT INTO " + _IDENT + rb" VALUES")
_CREATE = re.compile(rb"CREATE TABLE " + _IDENT + rb" \(")
# Statements a dump of one database never holds and a restore must never run: they would act
# outside the staging database (a dump made with --databases or --all-databases, or worse), and
# the client's backslash commands (\! runs a shell).
_REFUSED = re.compile(rb"\s*(?:USE\s|CREATE\s+DATABASE|CREATE\s+SCHEMA|DROP\s+DATABASE|DROP\s+SCHEMA"
                      rb"|GRANT\s|CREATE\s+USER|ALTER\s+USER|DROP\s+USER|SET\s+PASSWORD|\\)", re.I)


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", errors="replace")


class RowCounter:
    """Feed it the dump's lines; .tables is {table: rows}, .complete whether the trailer came."""

    def __init__(self):
        self.tables: dict[str, int] = {}
        self.complete = False
        self._table: str | None = None

    def feed(self, line: bytes) -> None:
        if self._table is None:
            if m := _INSERT.match(line):
                self._table = _name(m.group(1))
                line = line[m.end():]
            else:
                if m := _CREATE.match(line):
                    self.tables.setdefault(_name(m.group(1)), 0)
                elif line.startswith(TRAILER):
                    self.complete = True
                return
        body = _STRING.sub(b"", line).rstrip()
        self.tables[self._table] = self.tables.get(self._table, 0) + body.count(b"(")
        if body.endswith(b";"):
            self._table = None


class GzipReader:
    """A file-like reader over the dump's lines, gzip-compressed, for a streaming upload;
    counts rows, sizes and hashes what it hands out."""

    def __init__(self, lines: Iterable[bytes]):
        self._lines = iter(lines)
        self._gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
        self._buf = bytearray()
        self._done = False
        self.counter = RowCounter()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            pending = []
            for line in self._lines:
                self.counter.feed(line)
                pending.append(line)
                if sum(map(len, pending)) >= CHUNK:
                    break
            else:
                self._done = True
            self._buf += self._gz.compress(b"".join(pending))
            if self._done:
                self._buf += self._gz.flush()
        n = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.sha256.update(out)
        self.size += len(out)
        return out


def gunzip_lines(chunks: Iterable[bytes], expected_sha256: str | None = None) -> Iterator[bytes]:
    """The dump's lines from its gzip chunks. Raises BackupError on a corrupt or truncated gzip,
    a sha256 other than the sidecar's, a refused statement, or a dump without mariadb-dump's
    last line, before the caller can treat the load as complete."""
    gz = zlib.decompressobj(31)
    digest = hashlib.sha256()
    rest = b""
    seen_trailer = False
    lineno = 0
    for chunk in chunks:
        digest.update(chunk)
        try:
            data = rest + gz.decompress(chunk)
        except zlib.error as exc:
            raise BackupError(f"the dump is not a valid gzip stream ({exc})") from None
        if gz.unused_data:
            raise BackupError("the dump has data after the end of its gzip stream")
        *lines, rest = data.split(b"\n")
        for line in lines:
            lineno += 1
            if _REFUSED.match(line):
                raise BackupError(f"line {lineno} of the dump is a statement a restore never runs: "
                                  f"{line[:40].decode(errors='replace')!r}")
            seen_trailer = line.startswith(TRAILER)
            yield line + b"\n"
    if not gz.eof:
        raise BackupError("the dump is truncated (its gzip stream ends early)")
    if rest:
        seen_trailer = rest.startswith(TRAILER)
        yield rest
    if expected_sha256 and digest.hexdigest() != expected_sha256:
        raise BackupError(f"the dump's sha256 {digest.hexdigest()[:12]}... differs from its record's "
                          f"{expected_sha256[:12]}...: it changed after the backup")
    if not seen_trailer:
        raise BackupError("the dump is incomplete: it does not end with mariadb-dump's "
                          "'-- Dump completed' line")
