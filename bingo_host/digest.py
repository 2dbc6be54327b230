"""The sha256 of a file, read in 1 MiB chunks (bundles, kept revisions): standard library only,
so bootstrap's kept-release check need not load the signature code (integrity: botocore)."""

from __future__ import annotations

import hashlib


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
