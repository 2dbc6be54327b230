"""nginx: the site, the distribution's default site out of the way, test, reload, roll back.

Every write goes through ops.reverter (back up, write, `nginx -t`, restore on failure), the
same path enable-https takes for the TLS site.
"""

from __future__ import annotations

from ...facts import paths
from ...ops import reverter
from ...ops.service import RELOAD_NGINX

NAME = "nginx"
UNITS = (reverter.SERVICE,)


def converge(ctx) -> str:
    site = ctx.managed("nginx-site.conf")
    ours = [mf for mf in ctx.managed_files() if mf.on_change == RELOAD_NGINX]
    default_site = ctx.platform.nginx_default_site
    stale = [mf for mf in ours if ctx.differs(mf)]
    stale_default = bool(default_site) and ctx.fact(paths.lexists, default_site)

    if stale or stale_default:
        with reverter.writing(ctx, [mf.path for mf in ours] + ([default_site] if default_site else [])):
            for mf in stale:
                ctx.ensure_file(mf)
            if stale_default:
                ctx.remove_file(default_site)

    reverter.serve(ctx)
    return f"serving {site.path}"
