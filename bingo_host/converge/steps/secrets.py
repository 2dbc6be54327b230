"""The app's secrets, before anything renders bingo.ini: its database password, its Flask
secret_key (generated once per host and kept, so the app never rewrites bingo.ini to make one
and sessions survive deploys), its SMTP password if it has one, and the backup and dump
and restore users' passwords."""

from __future__ import annotations

from ... import layout, secrets
from ...secrets import is_reference

NAME = "secrets"


def _generated(ctx, path: str, what: str) -> str:
    value = ctx.fact(secrets.read_file, path)
    if value is None:
        value = secrets.generate()
        ctx.change(f"generate the {what} into {path} (0600)", lambda: secrets.store(path, value))
    return value


def _from(ctx, source: str, path: str, what: str, fetch=secrets.fetch) -> tuple[str, str]:
    """(value, where it came from) for generate | ssm:... | secretsmanager:... | a literal."""
    if source == "generate":
        return _generated(ctx, path, what), path
    if is_reference(source):
        return ctx.fact(fetch, source), source
    return source, "the config file"


def converge(ctx) -> str:
    ctx.secrets["app_password"], where = _from(ctx, ctx.cfg.database.password, layout.PASSWORD_FILE,
                                               "app password")
    ctx.secrets["secret_key"], key_from = _from(ctx, ctx.cfg.musicbingo.secret_key,
                                                layout.SECRET_KEY_FILE, "app's secret_key")
    summary = f"app password from {where}, secret_key from {key_from}"
    smtp = ctx.cfg.smtp.password
    if smtp:  # never 'generate' (config.py refuses it): the mail service issues it
        ctx.secrets["smtp_password"], smtp_from = _from(ctx, smtp, "", "SMTP password",
                                                         secrets.fetch_smtp_password)
        summary += f", SMTP password from {smtp_from}"
    if ctx.cfg.database.local:
        ctx.secrets["backup_password"] = _generated(ctx, layout.BACKUP_PASSWORD_FILE, "backup password")
        ctx.secrets["dump_password"] = _generated(ctx, layout.DUMP_PASSWORD_FILE, "dump password")
        ctx.secrets["restore_password"] = _generated(ctx, layout.RESTORE_PASSWORD_FILE, "restore password")
    return summary
