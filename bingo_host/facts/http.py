"""The one HTTP probe through this host's nginx, and the one rule for the app's health.

ValidateService, rollback and `bingo-host status` ask the same questions the same way, and the
HA target group's matcher uses the same rule: the health path (answered by bingo_health.py, see
health_wsgi.py) is healthy only with HTTP 200, which it gives only when the app imported and
reached its database with its own settings.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

from .. import __version__, layout, subp
from ..errors import CommandError

HEALTHY_STATUS = 200


@dataclass(frozen=True)
class Answer:
    url: str
    status: int | None
    location: str | None = None
    body: bytes = b""
    error: str | None = None  # no answer at all

    @property
    def ok(self) -> bool:
        return self.status == HEALTHY_STATUS

    def why(self) -> str:
        """What went wrong, for a log line or a problem. The health check keeps its reason out
        of the public answer: it logs it, so a 503 says where to read it."""
        if self.status is None:
            return f"no answer ({self.error})"
        if self.status == 503:
            reason = logged_reason(_health_log())
            return f"HTTP 503: {reason}" if reason else \
                f"HTTP 503 (the health check logs why: journalctl -u {layout.UWSGI_SERVICE})"
        return f"HTTP {self.status}"


HEALTH_LOG_PREFIX = "bingo_health: "


def logged_reason(journal: str) -> str | None:
    """The health check's last logged reason in the app unit's journal text (`-o cat`)."""
    said = [line for line in journal.splitlines() if line.startswith(HEALTH_LOG_PREFIX)]
    return said[-1][len(HEALTH_LOG_PREFIX):] if said else None


def _health_log() -> str:
    """The app unit's recent journal: where the health check says why (never in its answer).
    Root's commands (ValidateService, status) read it; without a journal, nothing. The last two
    minutes, all of them: with --since, journalctl's -n keeps the *first* lines (a release switch
    under load logs hundreds, and the newest reason was cut off)."""
    try:
        return subp.run(["journalctl", "-u", layout.UWSGI_SERVICE, "--since", "-2min",
                         "--no-pager", "-o", "cat"], rcs=range(256), timeout=10).stdout
    except (CommandError, OSError):
        return ""


def host_header(cfg, tls_domain: str | None) -> str:
    """The name nginx is asked for: the certificate's domain, else the first plain server_name."""
    names = [n for n in cfg.app.server_name if n != "_" and not n.startswith("*.")]
    return tls_domain or (names[0] if names else "localhost")


def get(path: str, host: str, tls: bool = False, timeout: float = 5.0) -> Answer:
    """GET path from nginx on 127.0.0.1 (443 without certificate checks when tls: this asks
    whether nginx serves, the certificate is checked on its own)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", 443, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=timeout)
    url = f"{'https' if tls else 'http'}://{host}{path}"
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": f"bingo-host/{__version__}",
                                           "Connection": "close"})
        resp = conn.getresponse()
        return Answer(url, resp.status, resp.getheader("Location"), resp.read(65536))
    except (OSError, http.client.HTTPException, socket.timeout) as exc:
        return Answer(url, None, error=str(exc) or type(exc).__name__)
    finally:
        conn.close()


def health(cfg, tls_domain: str | None, timeout: float = 5.0) -> Answer:
    return get(cfg.app.health_path, host_header(cfg, tls_domain), bool(tls_domain), timeout)


def index(cfg, tls_domain: str | None, timeout: float = 5.0) -> Answer:
    return get("/", host_header(cfg, tls_domain), bool(tls_domain), timeout)
