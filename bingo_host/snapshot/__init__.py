"""`bingo-host snapshot`: consistent EBS snapshots of this instance's volumes, then retention.

The data volume of a local database is snapshotted with MariaDB's writes blocked (dblock.py) and
its filesystem frozen (freeze.py, whose watchdog thaws it if the run dies or hangs); every other
volume crash-consistently; retention touches only snapshots tagged with this host's stack
(retention.py). The run and its order: run.take_snapshots. What is snapshotted and why: the
README's "Snapshots and retention".
"""

from ..errors import BingoHostError


class SnapshotError(BingoHostError):
    pass
