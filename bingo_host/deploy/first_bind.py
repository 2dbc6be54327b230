"""The app's first request, once, before any worker of a release serves: what bingo-host reads
of it.

The app binds its database on each worker's first request (a before_request handler): it creates
its tables and, when its User table is empty and `create_superuser` is on, an admin account,
unguarded. Right after a release is switched to, every worker is fresh, so concurrent first
requests bind at once and the losers answer 500 (a table or the account made twice). So a
slot's master, once it imported the release and before it forks a worker, sends the app its
first request in a child process (the health wrapper, health_wsgi.py: the app's own interpreter
and virtualenv, the app user, the emperor's sandbox, no second interpreter to start) and records
how it went in the slot's bind record. slots.wait_ready reads it: a release whose first request
fails, or that cannot be imported, is never switched to (the old slot serves on), and says why
at once instead of after the load timeout. The record holds the app's own exception line, which
may show a password (the app prints its database URL): it is masked here and never logged whole.

Before, ApplicationStart ran that request in a process of its own before the switch: a second
interpreter start and import of the app, 0.6-0.9 s of every deployment.
"""

from __future__ import annotations

import configparser
import os

from .. import layout, subp
from ..regular_file import read_regular
from . import DeployError
from .releases import Paths

SECRET_KEYS = ("passwd", "password", "secret_key")  # bingo.ini's values no error may show


def forget(app: str, slot: str) -> None:
    """No record from an earlier start of `slot` (its new master writes its own)."""
    try:
        os.unlink(layout.slot_bind_record(app, slot))
    except FileNotFoundError:
        pass


def check(ctx, slot: str) -> None:
    """DeployError with the app's reason when `slot`'s master recorded a failed first request
    (or could not import the release); nothing while there is no record yet."""
    try:
        found = read_regular(layout.slot_bind_record(ctx.cfg.app.name, slot))
    except OSError:
        return
    line = found[0].decode(errors="replace").strip() if found else ""
    if not line.startswith("failed "):
        return
    release = os.path.basename(os.path.realpath(Paths(ctx.cfg.app.root).current))
    said = subp.mask(line.removeprefix("failed "), ini_secrets(f"{ctx.cfg.app.root}/shared/bingo.ini"))
    raise DeployError(f"the app's first request failed in {release}, so it is not switched to: {said[:300]}")


def ini_secrets(path: str) -> list[str]:
    """bingo.ini's passwords and secret key, as written and as the app reads them ('%%' is '%')."""
    try:
        found = read_regular(path)
    except OSError:
        return []
    ini = configparser.RawConfigParser()
    try:
        ini.read_string(found[0].decode(errors="replace") if found else "")
    except configparser.Error:
        return []
    values = [ini[s][k] for s in ini.sections() for k in SECRET_KEYS if ini[s].get(k)]
    return [v for value in values for v in {value, value.replace("%%", "%")}]
