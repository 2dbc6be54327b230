"""`bingo-host snapshot`: consistent EBS snapshots of this instance's volumes, then retention.

A run, in order (:mod:`.run`; the module that does each step in brackets)::

    take the run lock beside the state file (the timer and a manual run never overlap);
    SIGTERM/SIGINT/SIGHUP from now on unwind through every `finally`
    IMDSv2: instance and region; DescribeVolumes: the attached volumes            [ec2]
    the data volume (volume.device), with a local database only:
      CreateSnapshot with DryRun           the permission, before any lock         [ec2]
      start the watchdog process           thaws if this run dies or hangs         [freeze]
      BACKUP STAGE START, BLOCK_COMMIT     FLUSH TABLES WITH READ LOCK if older    [dblock]
      sync; freeze the data mount          never /; thawed whatever interrupts     [freeze]
      CreateSnapshot                       EBS fixes the point in time here        [ec2]
      thaw; BACKUP STAGE END               in `finally`
    every other volume: CreateSnapshot, crash-consistent, never frozen             [ec2]
    when every snapshot was created: keep the newest snapshots.keep per volume
    among those tagged bingo-host:managed=true, delete the rest                    [retention]
    write the outcome to state.SNAPSHOT_FILE, which `status` reads, also on failure

In external-database mode every volume is crash-consistent: nothing is locked or frozen.
"""

from ..errors import BingoHostError


class SnapshotError(BingoHostError):
    pass
