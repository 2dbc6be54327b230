"""Installing distribution packages the platform's way: bootstrap's packages and certbot's.

Debian's maintainer scripts start a package's service as soon as it is installed: MariaDB would
start on its default datadir before bootstrap has mounted the volume. A policy-rc.d that exits
101 holds every service off until the install is over.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence

from .. import subp
from ..facts.platforms import Platform

POLICY_RC_D = "/usr/sbin/policy-rc.d"


@contextmanager
def services_held_off(enabled: bool) -> Iterator[None]:
    """No service starts from a maintainer script meanwhile (an existing policy-rc.d is kept)."""
    if not enabled or os.path.exists(POLICY_RC_D):
        yield
        return
    with open(POLICY_RC_D, "w") as f:
        f.write("#!/bin/sh\n# bingo-host: no service starts while packages install\nexit 101\n")
    os.chmod(POLICY_RC_D, 0o755)
    try:
        yield
    finally:
        os.unlink(POLICY_RC_D)


def install(platform: Platform, names: Sequence[str]) -> None:
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with services_held_off(platform.block_service_starts):
        if platform.block_service_starts:  # apt: refresh the lists once before installing
            subp.run(["apt-get", "update", "-q"], timeout=600, env=env)
        subp.run([*platform.install_cmd, *names], timeout=1800, env=env)
