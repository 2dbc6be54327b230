"""`bingo-host snapshot`: consistent EBS snapshots of this instance's volumes, then retention.

A run, in order (:mod:`.run`; the module that does each step in brackets)::

    take the run lock beside the state file (the timer and a manual run never overlap);
    SIGTERM/SIGINT/SIGHUP from now on unwind through every `finally`
    IMDSv2: instance and region; DescribeVolumes: the attached volumes            [ec2]
    DescribeTags: the instance's aws:cloudformation:stack-name, the bingo-host:stack
      tag of its snapshots (snapshots.stack, else the instance id without a stack)  [ec2]
    the data volume: the EBS volume mounted at volume.mountpoint where the host
      can tell (its NVMe serial), else the one attached as volume.device;
      snapshots.volumes: data (the default: bootstrap rebuilds the root volume)
      snapshots only it, all every attached volume
    the data volume, with a local database only:
      CreateSnapshot with DryRun           the permission, before any lock         [ec2]
      start the watchdog process           thaws if this run dies or hangs         [freeze]
      BACKUP STAGE START, BLOCK_COMMIT     FLUSH TABLES WITH READ LOCK if older    [dblock]
      sync; freeze the data mount          never /; thawed whatever interrupts     [freeze]
      CreateSnapshot                       EBS fixes the point in time here        [ec2]
      thaw; BACKUP STAGE END               in `finally`
    with volumes: all, every other volume: CreateSnapshot, crash-consistent        [ec2]
    each volume that got a new snapshot: keep its newest snapshots.keep among those
    tagged bingo-host:stack=<this stack>, delete the rest                          [retention]
    one volume's failure skips neither the others nor their retention: the run
    fails at the end, naming each failure
    write the outcome to state.SNAPSHOT_FILE, which `status` reads, also on failure

In external-database mode there is no data volume: volumes: all snapshots every volume
crash-consistently (nothing is locked or frozen), volumes: data is an error.
"""

from ..errors import BingoHostError


class SnapshotError(BingoHostError):
    pass
