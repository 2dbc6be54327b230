"""Logical backups beside the EBS snapshots: `bingo-host backup`, `restore --dump`, restore drills.

A backup streams `mariadb-dump --single-transaction` of the app database through gzip into S3
(``backups.bucket``/``backups.prefix``), never whole on disk or in memory, and then writes a
sidecar ``<dump>.json`` with the dump's sha256 and every table's row count, counted in the dump
stream itself (so they are the counts of the dump's own consistent snapshot). A dump without
its sidecar is incomplete: `latest`, drills and retention ignore it.

A restore loads a dump into a staging database and swaps it in with one RENAME TABLE only once
the load succeeded, the dump was complete (gzip intact, mariadb-dump's last line present) and
its row counts match the sidecar: a failed, truncated or corrupt load changes nothing live.
A drill does the same into a scratch database, compares, drops it, and records the result
for `status`.

The load trusts nothing in the bucket: the client (--sandbox --binary-mode) reads only the
statements an allowlist parser checked, logged in as an account that can write only the
staging and drill schemas; the swap is a separate privileged session.

Modules: statements.py (the allowlist parser: what the client may read, the row counts),
dumpfile.py (the stream: gzip both ways, bounded), store.py (S3), database.py (credentials,
mariadb-dump and mariadb, staging databases, the swap), run.py (backup, restore, drill in
order, and their records).
"""

from ..errors import BingoHostError


class BackupError(BingoHostError):
    pass
