"""`bingo-host create-admin`: the site's first admin account, with a generated password.

Left to itself the app makes `admin` with the password `changeme` on its first bind and prints it
to its log, so bingo.ini turns that off and this command makes the admin instead. The password
is generated here, passed to the app on stdin, kept in layout.ADMIN_PASSWORD_FILE (0600 root)
and shown once on stdout, never logged (the app's own print of it is read and dropped). The
account is made by the app's own code (DatabaseConnection.create_superuser), run as the app user
with the serving release, so hash and groups are the app's, and checked by logging in the app's
way (User.check_password) before it is kept. An existing account is left alone unless --reset.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as _random

from . import layout, subp
from .errors import BingoHostError, ConfigError
from .secrets import store

log = logging.getLogger(__name__)

DEFAULT_PASSWORD = "changeme"  # the app's User.__DEFAULT_ADMIN_PASSWORD__
EXISTS, DEFAULT = 3, 4  # the app side's exit codes: the user exists (DEFAULT: with `changeme`)

# Runs in the app's interpreter as the app user (standard library and the app's own modules).
APP_SIDE = r"""
import json, os, sys
req = json.loads(sys.stdin.readline())
sys.path.insert(0, os.getcwd())
from musicbingo.options import Options
from musicbingo.models.db import DatabaseConnection
from musicbingo.models.user import User
opts = Options()
opts.load_ini_file()
DatabaseConnection.bind(opts.database, create_superuser=False)
conn = DatabaseConnection._connection
with conn.session_scope() as session:
    user = User.get(session, username=req["username"])
    if user is not None and not req["reset"]:
        sys.exit(4 if user.check_password(req["default"]) else 3)
    if user is not None:
        user.set_password(req["password"])
if user is None:
    conn.create_superuser(username=req["username"], password=req["password"])
with conn.session_scope() as session:
    user = User.get(session, username=req["username"])
    ok = user is not None and user.check_password(req["password"])
sys.stdout.write("\nVERIFIED\n" if ok else "\nNOT VERIFIED\n")
"""


def _release(root: str) -> tuple[str, str]:
    """(release directory, its virtualenv's python) of the release `current` points at."""
    release = os.path.realpath(f"{root}/current")
    python = f"{release}/venv/bin/python"
    if not release.startswith(f"{root}/releases/") or not os.path.exists(python):
        raise BingoHostError(f"no release of the app is deployed under {root} yet: deploy one, "
                             "then run create-admin")
    return release, python


def create(cfg, app_user: str, *, username: str = "admin", reset: bool = False,
           password_file: str = layout.ADMIN_PASSWORD_FILE, dry_run: bool = False) -> str:
    """Make (or with reset, give a new password to) the app account `username` in the app's
    admin group; returns the password. BingoHostError when the account exists and reset is not
    given (saying whether it still has the default password), or the app could not do it."""
    if not username or len(username) > 32 or not username.isprintable() or username != username.strip():
        raise ConfigError("--username", "1 to 32 printable characters, no surrounding spaces")
    release, python = _release(cfg.app.root)
    if dry_run:
        return (f"create-admin: would {'give a new password to' if reset else 'make'} the app account "
                f"{username!r} (release {release}) and keep its password in {password_file}")
    password = _random.token_urlsafe(18)
    request = json.dumps({"username": username, "password": password, "reset": reset,
                          "default": DEFAULT_PASSWORD}) + "\n"
    argv = ["runuser", "-u", app_user, "--", "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
            python, "-I", "-c", APP_SIDE]
    try:
        result = subp.run(argv, input=request, rcs=range(256), timeout=120, cwd=release,
                          secrets=[password])
    except subp.CommandError as exc:  # not found, timed out: no output to read
        raise BingoHostError(f"create-admin: {exc}") from None
    if result.returncode in (EXISTS, DEFAULT):
        default = (" and still has the app's well-known default password: give it a new one with "
                   "--reset") if result.returncode == DEFAULT else " (--reset gives it a new password)"
        raise BingoHostError(f"the app account {username!r} exists{default}")
    last = [line for line in result.stdout.splitlines() if line.strip()][-1:]
    if result.returncode != 0 or last != ["VERIFIED"]:
        said = [line for line in result.stderr.splitlines() if line.strip()][-1:] or last
        raise BingoHostError(f"create-admin: the app could not set the password of {username!r} "
                             f"(exit {result.returncode}): {subp.mask(said[0], [password]) if said else 'no output'}")

    store(password_file, password)
    log.info("create-admin: %s the app account %r; its password is in %s (0600 root)",
             "reset the password of" if reset else "made", username, password_file)
    return password
