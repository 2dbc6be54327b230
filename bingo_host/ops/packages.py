"""Installing distribution packages the platform's way: bootstrap's packages and certbot's.

Debian's maintainer scripts start a package's service as soon as it is installed: MariaDB would
start on its default datadir before bootstrap has mounted the volume. A policy-rc.d that exits
101 holds every service off until the install is over. Ours carries POLICY_MARK: a run killed
during the install leaves it behind (it would hold off every service restart of later security
updates), so the next run that installs removes it afterwards, and the packages step removes it
at its start. A policy-rc.d without the mark is the admin's: kept, never removed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence

from .. import subp
from ..facts.packages import POLICY_MARK, POLICY_RC_D, policy_rc_d_is_ours
from ..facts.platforms import Platform
from . import files

POLICY_SCRIPT = f"#!/bin/sh\n{POLICY_MARK}\nexit 101\n"


def remove_policy_rc_d(path: str = POLICY_RC_D) -> None:
    """Remove our policy-rc.d (only if it is ours: the admin's stays)."""
    if policy_rc_d_is_ours(path):
        os.unlink(path)


@contextmanager
def services_held_off(enabled: bool, path: str = POLICY_RC_D) -> Iterator[None]:
    """No service starts from a maintainer script meanwhile (an admin's policy-rc.d is kept)."""
    if not enabled or (os.path.lexists(path) and not policy_rc_d_is_ours(path)):
        yield
        return
    files.write_atomic(path, POLICY_SCRIPT, 0o755)  # atomic: never there without the mark
    try:
        yield
    finally:
        remove_policy_rc_d(path)


def install(platform: Platform, names: Sequence[str]) -> None:
    # needrestart's apt hook restarts nothing here: `bingo-host patch` restarts, outside deploys.
    env = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}
    with services_held_off(platform.block_service_starts):
        if platform.block_service_starts:  # apt: refresh the lists once before installing
            subp.run(["apt-get", "update", "-q"], timeout=600, env=env)
        subp.run([*platform.install_cmd, *names], timeout=1800, env=env)
