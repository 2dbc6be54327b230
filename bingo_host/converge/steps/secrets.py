"""The app's secrets, before anything renders bingo.ini: its database password, its Flask
secret_key (generated once per host and kept, so the app never rewrites bingo.ini to make one
and sessions survive deploys), and the backup user's password."""

from __future__ import annotations

from ... import layout, secrets
from ...config import is_reference

NAME = "secrets"


def _generated(ctx, path: str, what: str) -> str:
    value = secrets.read_file(path)
    if value is None:
        value = secrets.generate()
        ctx.change(f"generate the {what} into {path} (0600)", lambda: secrets.store(path, value))
    return value


def converge(ctx) -> str:
    source = ctx.cfg.database.password
    if source == "generate":
        ctx.secrets["app_password"] = _generated(ctx, layout.PASSWORD_FILE, "app password")
        where = layout.PASSWORD_FILE
    elif is_reference(source):
        ctx.secrets["app_password"] = secrets.fetch(source)
        where = source
    else:
        ctx.secrets["app_password"] = source
        where = "the config file"
    ctx.secrets["secret_key"] = _generated(ctx, layout.SECRET_KEY_FILE, "app's secret_key")
    if ctx.cfg.database.local:
        ctx.secrets["backup_password"] = _generated(ctx, layout.BACKUP_PASSWORD_FILE, "backup password")
    return f"app password from {where}"
