"""The dump as a stream: gzip on the way out, gunzip on the way in, both through the statement
parser (statements.py), which checks every statement and counts the rows.

Memory stays bounded whatever the gzip holds: it is inflated CHUNK bytes at a time, and a line
longer than statements.LINE_MAX is refused before more of it is kept (a 1 MiB gzip can inflate
to a single 1 GiB line).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Iterable, Iterator

from . import BackupError
from .statements import LINE_MAX, Parser, Refused, _size

CHUNK = 256 * 1024


class GzipReader:
    """A file-like reader over mariadb-dump's lines, gzip-compressed, for a streaming upload;
    parses them (a dump a restore would refuse fails the backup), counts rows, sizes and hashes
    what it hands out."""

    def __init__(self, lines: Iterable[bytes]):
        self._lines = iter(lines)
        self._gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
        self._buf = bytearray()
        self._done = False
        self.parser = Parser()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            pending = []
            for line in self._lines:
                self.parser.feed(line[:-1] if line.endswith(b"\n") else line)
                pending.append(line)
                if sum(map(len, pending)) >= CHUNK:
                    break
            else:
                self._done = True
                self.parser.finish()
            self._buf += self._gz.compress(b"".join(pending))
            if self._done:
                self._buf += self._gz.flush()
        n = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.sha256.update(out)
        self.size += len(out)
        return out


def _inflate(chunks: Iterable[bytes], digest) -> Iterator[bytes]:
    """The gzip's content, at most CHUNK bytes at a time."""
    gz = zlib.decompressobj(31)
    for chunk in chunks:
        digest.update(chunk)
        data, out = chunk, b""
        while data or len(out) == CHUNK:  # a full CHUNK may leave output inside zlib
            try:
                out = gz.decompress(data, CHUNK)
            except zlib.error as exc:
                raise BackupError(f"the dump is not a valid gzip stream ({exc})") from None
            if gz.unused_data:
                raise BackupError("the dump has data after the end of its gzip stream")
            data = gz.unconsumed_tail
            yield out
    if not gz.eof:
        raise BackupError("the dump is truncated (its gzip stream ends early)")


def gunzip_statements(chunks: Iterable[bytes], expected_sha256: str | None = None,
                      parser: Parser | None = None) -> Iterator[bytes]:
    """The text the client may read, from the dump's gzip chunks: its statements, each checked
    (statements.Parser; its row counts in `parser`). Raises BackupError on a corrupt or truncated
    gzip, a refused statement or line, a sha256 other than the sidecar's, or a dump without
    mariadb-dump's last line, before the caller can treat the load as complete."""
    parser = parser if parser is not None else Parser()
    digest = hashlib.sha256()
    pending = bytearray()
    for out in _inflate(chunks, digest):
        start = 0
        while (newline := out.find(b"\n", start)) >= 0:
            if pending:
                pending += out[start:newline]
                line = bytes(pending)
                pending.clear()
            else:
                line = out[start:newline]
            yield parser.feed(line)
            start = newline + 1
        pending += out[start:]
        if len(pending) > LINE_MAX:
            raise Refused(parser.lineno + 1, f"a line longer than {_size(LINE_MAX)}")
    if pending:  # mariadb-dump ends its last line too: this one was cut off
        raise BackupError(f"the dump is incomplete: line {parser.lineno + 1}, its last, is cut off")
    parser.finish()
    if expected_sha256 and digest.hexdigest() != expected_sha256:
        raise BackupError(f"the dump's sha256 {digest.hexdigest()[:12]}... differs from its record's "
                          f"{expected_sha256[:12]}...: it changed after the backup")
    if not parser.complete:
        raise BackupError("the dump is incomplete: it does not end with mariadb-dump's "
                          "'-- Dump completed' line")
