"""`bingo-host restore --snapshot SNAP`: put an EBS snapshot of the data volume in its place.

Each step reads EC2 and the host first and does only what is missing, so a run killed at any
point (SIGKILL included) is finished by running the same command again; the record of the
restore under way (restore_record.py) names only the volumes, never the progress. Any failure puts
the old volume back the same way in reverse. The steps: run.py (refusals, order, the way back),
ebs.py (volumes), host.py (services, mounts, checks); the whole story in the README's "Restoring".
"""

from ..errors import BingoHostError


class RestoreError(BingoHostError):
    pass


class Refused(RestoreError):
    """Refused before anything changed: exit status 2."""

    exit_code = 2
