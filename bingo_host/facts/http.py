"""The one HTTP probe through this host's nginx, and the one rule for the app's health.

ValidateService, rollback and `bingo-host status` ask the same questions the same way, and the
HA target group's matcher uses the same rule: the health path (answered by bingo_health.py, see
health_wsgi.py) is healthy only with HTTP 200, which it gives only when the app imported and
reached its database with its own settings.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .. import __version__, layout, subp
from ..errors import CommandError

HEALTHY_STATUS = 200
MAX_HEAD = MAX_BODY = 65536  # bytes of an answer's head, and of its body, that are read


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
    whether nginx serves, the certificate is checked on its own). HTTP/1.0 over a socket, not
    http.client: that and the email package it loads are ~25 ms of every ValidateService hook's
    and status's start (-X importtime), for one request whose answer nginx closes."""
    url = f"{'https' if tls else 'http'}://{host}{path}"
    request = (f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: bingo-host/{__version__}\r\n"
               "Connection: close\r\n\r\n").encode("ascii")
    try:
        with socket.create_connection(("127.0.0.1", 443 if tls else 80), timeout=timeout) as raw:
            sock = _without_checks(raw) if tls else raw
            sock.sendall(request)
            data = bytearray()
            while len(data) < MAX_HEAD + MAX_BODY:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (OSError, UnicodeError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
        return Answer(url, None, error=str(exc) or type(exc).__name__)
    return parse_answer(url, bytes(data))


def _without_checks(raw: socket.socket):
    import ssl  # here: ~7 ms only a host with HTTPS pays (-X importtime)

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(raw)


def parse_answer(url: str, data: bytes) -> Answer:
    """An HTTP answer's status, Location and (at most MAX_BODY bytes of) body; anything that is
    not an HTTP answer is no answer."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(head) > MAX_HEAD or len(parts) < 2 or not parts[0].startswith("HTTP/1.") \
            or not (parts[1].isdigit() and len(parts[1]) == 3):
        return Answer(url, None, error=f"not an HTTP answer: {data[:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    return Answer(url, int(parts[1]), headers.get("location"), body[:MAX_BODY])


def health(cfg, tls_domain: str | None, timeout: float = 5.0) -> Answer:
    return get(cfg.app.health_path, host_header(cfg, tls_domain), bool(tls_domain), timeout)


def index(cfg, tls_domain: str | None, timeout: float = 5.0) -> Answer:
    return get("/", host_header(cfg, tls_domain), bool(tls_domain), timeout)
