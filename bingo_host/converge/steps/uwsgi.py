"""uWSGI: a bingo-host-managed virtualenv with pyuwsgi, the emperor unit, the app's vassal and
the health check it loads around the app (bingo_health.py).

The vassal file is installed only once a release with an application exists (`current` has
application.py): before the first deploy the emperor runs with no app rather than restarting
a vassal that cannot start.
"""

from __future__ import annotations

import os

from ... import layout, subp

from ...resolve import app_user
from ...facts import paths
from ...facts.uwsgi import installed_pyuwsgi, vassal_user
from ...ops import service
from ...ops.service import RELOAD_APP

NAME = "uwsgi"
SERVICE = f"{layout.UWSGI_SERVICE}.service"


def converge(ctx) -> str:
    venv = layout.UWSGI_VENV
    wanted_version = layout.PYUWSGI_REQUIREMENT.split("==")[1]
    restart = service.restart(layout.UWSGI_SERVICE)
    if not ctx.fact(paths.exists, f"{venv}/bin/python"):
        ctx.change(f"create virtualenv {venv}",
                   lambda: subp.run([ctx.platform.python, "-m", "venv", venv], timeout=300))
    if ctx.fact(installed_pyuwsgi, venv) != wanted_version:
        ctx.set_pending(restart)
        ctx.change(f"pip install {layout.PYUWSGI_REQUIREMENT}", lambda: subp.run(
            [f"{venv}/bin/pip", "install", "-q", "--disable-pip-version-check",
             layout.PYUWSGI_REQUIREMENT], timeout=900))

    if ctx.ensure_file(ctx.managed("uwsgi-emperor.service")):  # owes the restart itself
        ctx.change("systemctl daemon-reload", service.daemon_reload)

    if not ctx.fact(paths.isdir, layout.VASSALS_DIR):
        # An emperor started before its directory exists treats the path as one file and never
        # spawns a vassal put there later: create it first, and restart an emperor that missed it.
        ctx.set_pending(restart)
        ctx.change(f"create {layout.VASSALS_DIR}", lambda: os.makedirs(layout.VASSALS_DIR, mode=0o755))

    ctx.ensure_file(ctx.managed("health_wsgi.py"))  # like bingo.ini, owes RELOAD_APP
    vassal = ctx.managed("uwsgi-vassal.ini")
    if ctx.fact(paths.exists, f"{ctx.cfg.app.root}/current/application.py"):
        # A new or changed vassal file reloads the app by itself; otherwise a chain reload. But
        # a master drops privileges once: after an app user change only a new master runs the
        # workers as the new user (a reloaded one keeps the old, which can no longer read bingo.ini).
        ran_as = ctx.fact(vassal_user, vassal.path)
        changed = ctx.ensure_file(vassal)
        if changed and ran_as not in (None, app_user(ctx.cfg)):
            ctx.set_pending(restart)
        if not changed and ctx.pending(RELOAD_APP):
            ctx.change("chain reload of the app's workers (for the new bingo.ini or health check)",
                       lambda: service.chain_reload_app(ctx.cfg.app.name))
        has_app = True
    else:
        ctx.remove_file(vassal.path)
        has_app = False
    ctx.done(RELOAD_APP)  # no app runs, or it reloads

    service.ensure_running(ctx, SERVICE, restart)
    app = "serving the current release" if has_app else "no release deployed yet"
    return f"emperor running with pyuwsgi {wanted_version}, {app}"
