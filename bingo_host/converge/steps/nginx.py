"""nginx: the site, the distribution's default site out of the way, test, reload, roll back.

Like certbot's nginx installer: keep the previous files, write the new ones, `nginx -t`, and
if the test fails put the previous files back and leave the running nginx as it was.
"""

from __future__ import annotations

import os

from ...ops import files
from ... import subp

from ...ops import service
from ...errors import BingoHostError, CommandError

NAME = "nginx"
SERVICE = "nginx.service"
RELOAD = "reload nginx"


def _snapshot(path: str):
    """What is at path now: ('link', target), ('file', bytes, mode) or None."""
    if os.path.islink(path):
        return ("link", os.readlink(path))
    if os.path.exists(path):
        with open(path, "rb") as f:
            return ("file", f.read(), os.stat(path).st_mode & 0o7777)
    return None


def _restore(path: str, saved) -> None:
    if saved is None:
        if os.path.lexists(path):
            os.unlink(path)
    elif saved[0] == "link":
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(saved[1], path)
    else:
        files.write_atomic(path, saved[1], saved[2])


def config_test() -> None:
    try:
        subp.run(["nginx", "-t", "-q"], timeout=60)
    except CommandError as exc:
        raise BingoHostError(f"nginx -t rejected the new configuration, previous files restored:\n"
                             f"{exc.stderr.strip()}") from None


def converge(ctx) -> str:
    site = ctx.managed("nginx-site.conf")
    ours = [mf for mf in (ctx.managed("nginx-main.conf"), site) if mf]
    default_site = ctx.platform.nginx_default_site
    touched = [mf.path for mf in ours] + ([default_site] if default_site else [])
    stale = [mf for mf in ours if ctx.differs(mf)]
    stale_default = bool(default_site) and os.path.lexists(default_site)

    if stale or stale_default:
        saved = {path: _snapshot(path) for path in touched}
        ctx.set_pending(RELOAD)
        try:
            for mf in stale:
                ctx.ensure_file(mf)
            if stale_default:
                ctx.remove_file(default_site)
            if not ctx.dry_run:
                config_test()
        except BaseException:
            for path, before in saved.items():
                _restore(path, before)
            ctx.done(RELOAD)
            raise

    service.ensure_running(ctx, SERVICE, RELOAD, verb="reload", before_start=config_test)
    return f"serving {site.path}"
