"""Zero-downtime CodeDeploy releases: appspec.yml, the lifecycle hooks, release directories.

    <root>/staging/                  where appspec.yml's `files` land (emptied by BeforeInstall)
    <root>/releases/<deployment-id>/ one per deployment, built by AfterInstall, never changed after
        venv -> <root>/venvs/<hash>  a virtualenv shared by every release with the same requirements
        bingo.ini, musicbingo/bingo.ini -> <root>/shared/bingo.ini  (both places the app has read it)
        bingo-release.json           what the release came from (RELEASE_FILE, schema in releases.py)
    <root>/venvs/<hash>/             virtualenvs, keyed by the requirements hash
    <root>/current -> releases/<id>  switched atomically by ApplicationStart (and rollback)
    /var/lib/bingo-host/deploy.json  the deployment in progress or the last one (state.py)
"""

from __future__ import annotations

from ..errors import BingoHostError


class BundleError(BingoHostError):
    """A revision that cannot be deployed (bad appspec, missing or CRLF hook...): nothing changed."""

    exit_code = 2


class DeployError(BingoHostError):
    """A deployment step failed; the serving release was left (or put back) as it was."""
