"""Zero-downtime CodeDeploy releases: appspec.yml, the lifecycle hooks, release directories.

    <root>/staging/                  where appspec.yml's `files` land (emptied by BeforeInstall)
    <root>/releases/<deployment-id>/ one per deployment, built by AfterInstall, never changed after
        venv -> <root>/venvs/<hash>  a virtualenv shared by every release with the same requirements
        bingo.ini, musicbingo/bingo.ini -> <root>/shared/bingo.ini  (both places the app has read it)
        bingo-release.json           what the release came from (RELEASE_FILE, schema in releases.py)
    <root>/venvs/<hash>/             virtualenvs, keyed by the requirements hash (built by the build
                                     account, then root's and read-only: builder.py)
    <root>/current -> releases/<id>  switched atomically by ApplicationStart (and rollback)
    /var/lib/bingo-host/deploy.json  the deployment in progress or the last one (record.py)

Two drivers, one set of hooks:
    hooks.py      `bingo-host hook EVENT`: events.py (what each event does here), record.py (the
                  deploy lock across hooks), upgrade.py, releases.py (building, pruning;
                  virtualenvs.py, builder.py: the build account that runs the virtualenv
                  build), switch.py (`current` and uWSGI), health.py; rollback.py is
                  `bingo-host rollback`
    lifecycle.py  `bingo-host deploy`, the CodeDeploy agent emulated: agent.py (its config and
                  layout), archive.py (unpacking), installer.py (Install), scripts.py (hook scripts)
    appspec.py    appspec.yml checked as the agent reads it; bundle.py builds a revision
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
