"""Logical backups beside the EBS snapshots: `bingo-host backup`, `restore --dump`, restore drills.

A dump streams to S3 and is complete only with its sidecar (sha256, each table's rows counted in
the stream). A restore loads into a staging database and swaps it in with one RENAME TABLE only
after a complete load with matching counts, so a failed or corrupt load changes nothing live. The
load trusts nothing in the bucket: the client reads only what statements.py's allowlist checked,
as an account that can write only the staging and drill schemas. The README's "Backups and
drills" says what each command does.
"""

from ..errors import BingoHostError


class BackupError(BingoHostError):
    pass
