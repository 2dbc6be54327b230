"""The app's and the backup user's database passwords, before anything renders bingo.ini."""

from __future__ import annotations

from .. import layout, secrets
from ..config import is_reference

NAME = "secrets"


def _generated(ctx, path: str, what: str) -> None:
    value = secrets.read_file(path)
    if value is None:
        value = secrets.generate()
        ctx.change(f"generate the {what} password into {path} (0600)", lambda: secrets.store(path, value))
    return value


def converge(ctx) -> str:
    source = ctx.cfg.database.password
    if source == "generate":
        ctx.secrets["app_password"] = _generated(ctx, layout.PASSWORD_FILE, "app")
        where = layout.PASSWORD_FILE
    elif is_reference(source):
        ctx.secrets["app_password"] = secrets.fetch(source)
        where = source
    else:
        ctx.secrets["app_password"] = source
        where = "the config file"
    if ctx.cfg.database.local:
        ctx.secrets["backup_password"] = _generated(ctx, layout.BACKUP_PASSWORD_FILE, "backup")
    return f"app password from {where}"
