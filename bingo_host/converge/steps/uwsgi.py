"""uWSGI: a bingo-host-managed virtualenv with pyuwsgi, the emperor unit, the app's vassal and
the health check it loads around the app (bingo_health.py).

A vassal runs only once a release with an application exists (`current` has application.py):
before the first deploy the emperor runs with no app rather than restarting a vassal that
cannot start. The app's vassal is a release slot's (deploy/slots.py): a change to it starts on
the other slot, and the serving one stops once that one answers.
"""

from __future__ import annotations

import os

from ... import layout, subp

from ...deploy import slots as switch_slots, switch
from ...facts import paths, uwsgi
from ...facts.uwsgi import installed_pyuwsgi
from ...ops import service
from ...ops.service import RELOAD_APP

NAME = "uwsgi"
SERVICE = f"{layout.UWSGI_SERVICE}.service"
UNITS = (SERVICE,)


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

    for source in layout.HEALTH_SOURCES:  # like bingo.ini, owes RELOAD_APP
        ctx.ensure_file(ctx.managed(source))
    service.ensure_running(ctx, SERVICE, restart)  # before a slot starts: the emperor starts it
    app, root = ctx.cfg.app.name, ctx.cfg.app.root
    slot = ctx.fact(uwsgi.serving_slot, layout.app_socket(app))
    ctx.app_slot = slot or layout.SLOTS[0]
    has_app = ctx.fact(paths.exists, f"{root}/current/application.py")
    link = ctx.fact(paths.readlink, f"{root}/current") if has_app else None
    ctx.app_release = os.path.basename(link.rstrip("/")) if link else None  # the vassal names it
    vassal = ctx.managed("uwsgi-vassal.ini")
    others = [path for path in (*(layout.slot_vassal_file(app, s) for s in layout.SLOTS),
                                layout.vassal_file(app))
              if path != vassal.path and ctx.fact(paths.lexists, path)]
    if has_app:
        # Every change reaches the app through a new master on the other slot (switch.py): a
        # new setting, bingo.ini or health check, or app user (a master drops privileges once);
        # the serving slot keeps serving until that one answers.
        why = ("no slot serves yet" if slot is None or not ctx.fact(paths.lexists, vassal.path) else
               "its settings changed" if ctx.differs(vassal) else
               "for the new bingo.ini or health check" if ctx.pending(RELOAD_APP) else
               "another vassal runs beside it" if others else None)
        if why:
            then = ", then stop the old one" if slot or others else ""
            ctx.change(f"start the app on uWSGI slot {switch_slots.other(slot)} ({why}){then}",
                       lambda: switch.start_other_slot(ctx, ctx.app_release))
    else:
        for path in [*others, vassal.path]:
            ctx.remove_file(path)
    ctx.done(RELOAD_APP)  # no app runs, or a new slot loaded it
    app_line = "serving the current release" if has_app else "no release deployed yet"
    return f"emperor running with pyuwsgi {wanted_version}, {app_line}"
