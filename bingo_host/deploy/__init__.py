"""Zero-downtime CodeDeploy releases: appspec.yml, the lifecycle hooks, release directories.

    <root>/staging/                  where appspec.yml's `files` land
    <root>/releases/<deployment-id>/ one per deployment, never changed once built (releases.py)
    <root>/venvs/<hash>/             virtualenvs shared by releases with the same requirements
    <root>/current -> releases/<id>  the serving release, switched atomically (switch.py)
    /var/lib/bingo-host/deploy.json  the deployment in progress or the last one (record.py)

Two drivers run the same events (events/ says what each does): hooks.py under the CodeDeploy
agent (`bingo-host hook EVENT`), and lifecycle.py, the agent emulated (`bingo-host deploy`).
"""

from __future__ import annotations

import os

from ..errors import BingoHostError


class BundleError(BingoHostError):
    """A revision that cannot be deployed (bad appspec, missing or CRLF hook...): nothing changed."""

    exit_code = 2


class DeployError(BingoHostError):
    """A deployment step failed; the serving release was left (or put back) as it was."""


def env_seconds(name: str, default: float) -> float:
    """A deadline an environment variable may override (slow hosts, tests); junk is ignored."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
