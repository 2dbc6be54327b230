"""`bingo-host restore --snapshot SNAP`: put an EBS snapshot of the data volume in its place.

Each step reads EC2 and the host first and does only what is missing, so a run killed at any
point (SIGKILL included) is finished by running the same command again; the record of the
restore under way (:mod:`.record`) only names the volumes, never the progress. In order (the
module that does each step in brackets)::

    refuse before any change (exit 2): an external database, a deployment under way, a
    snapshot not of this host's data volume (unless --force), an availability zone that
    differs, another restore unfinished                                         [run]
    hold the host lock and the snapshot lock; record the restore                [record]
    create   a volume from the snapshot in this instance's zone, the data
             volume's type, encrypted, its tags plus restored-from/replaces      [ebs]
    stop     uWSGI and MariaDB; unmount the data mount                          [host]
    detach   the data volume, tagged replaced-by (kept, never deleted)          [ebs]
    attach   the new volume as the same device; wait for it by its volume id    [ebs, host]
    adopt    bootstrap's steps: fstab follows its UUID, mount, start everything [host]
    check    services, the app's database login and HTTP through nginx          [host]

Any failure puts it back the same way in reverse (the new volume detached and tagged
restore-failed, the old one attached, adopted and checked) and exits 1.
"""

from ..errors import BingoHostError


class RestoreError(BingoHostError):
    pass


class Refused(RestoreError):
    """Refused before anything changed: exit status 2."""

    exit_code = 2
