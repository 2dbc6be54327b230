"""`bingo-host enable-https`: an ACME certificate from certbot, then nginx's site with TLS.

certbot is only the authenticator (`certonly --nginx`: a temporary challenge location, never
the certificate installed into nginx's files); bingo-host owns the site, which renders TLS once
the certificate of the recorded domain (state.https_domain) exists, so `bootstrap` keeps it.
certbot gets this process's environment (REQUESTS_CA_BUNDLE, HTTPS_PROXY). A failed certbot run
changes nothing that serves: what it left in nginx's files is put back and nginx is not
reloaded; our own writes go through ops.reverter (`nginx -t`, reload, or every file put back).
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass

from . import layout, state, subp
from .config import Config
from .context import Context, make_context
from .name_fields import domain_name, email as check_email
from .errors import BingoHostError, ConfigError
from .facts import systemd
from .facts.packages import installed
from .facts.platforms import Platform
from .ops import packages, reverter, service
from .ops.lock import host_lock
from .ops.service import DAEMON_RELOAD, RELOAD_NGINX

STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
RENEW_TIMER = f"{layout.RENEW_UNIT}.timer"
DEPLOY_HOOK = "systemctl reload nginx"
CERTBOT_LOG = "/var/log/letsencrypt/letsencrypt.log"
NGINX_CONF = "/etc/nginx/nginx.conf"
_SERVER_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    domain: str
    email: str | None  # None: --register-unsafely-without-email
    server: str | None  # ACME directory URL; None: certbot's default (Let's Encrypt)


def serves(server_names: tuple[str, ...], domain: str) -> bool:
    """Whether nginx's server_name list answers for domain ('_' answers every name)."""
    for name in server_names:
        if name in ("_", domain):
            return True
        if name.startswith("*.") and domain.endswith(name[1:]):
            return True
    return False


def validate(cfg: Config, domain: str | None, email: str | None, no_email: bool,
             server: str | None, staging: bool) -> Request:
    """The request, or ConfigError (exit 2) before anything changes."""
    if domain is None:
        domain = cfg.https.domain
        if domain is None:
            raise ConfigError("--domain", "required (or set https.domain in the config)")
    domain = domain_name(domain, "--domain")
    if cfg.https.domain and cfg.https.domain != domain:
        raise ConfigError("--domain", f"the config's https.domain is {cfg.https.domain}: change it "
                                      "there (or leave --domain out)")
    if not serves(cfg.app.server_name, domain):
        raise ConfigError("--domain", f"nginx does not serve {domain}: app.server_name is "
                                      f"'{' '.join(cfg.app.server_name)}'; add {domain} to it and "
                                      "run `bingo-host bootstrap` first")
    if no_email and email:
        raise ConfigError("--email", "give --email or --no-email, not both")
    if not no_email:
        email = email or cfg.https.email
        if email is None:
            raise ConfigError("--email", "needed for expiry and account notices; or pass --no-email")
        email = check_email(email, "--email")
    if staging and server:
        raise ConfigError("--server", "give --server or --staging, not both")
    if staging:
        server = STAGING
    if server is not None and not _SERVER_URL.fullmatch(server):
        raise ConfigError("--server", "must be an https:// ACME directory URL")
    return Request(domain, None if no_email else email, server)


# -- certbot --

def certbot_installed(platform: Platform) -> bool:
    if not os.access(platform.certbot, os.X_OK):
        return False
    if platform.certbot_venv:
        return bool(glob.glob(f"{platform.certbot_venv}/lib/python3*/site-packages/certbot_nginx"))
    return set(platform.certbot_packages) <= installed(platform)


def install_certbot(platform: Platform) -> None:
    """certbot and its nginx plugin, the platform's way (distro packages or a virtualenv)."""
    if platform.certbot_packages:
        packages.install(platform, platform.certbot_packages)
    if platform.certbot_venv:
        venv = platform.certbot_venv
        if not os.path.exists(f"{venv}/bin/python"):
            subp.run([platform.python, "-m", "venv", venv], timeout=300)
        subp.run([f"{venv}/bin/pip", "install", "-q", "--disable-pip-version-check",
                  "--upgrade", *platform.certbot_pip], timeout=1800)
    if not certbot_installed(platform):
        raise BingoHostError(f"certbot is still missing at {platform.certbot} after installing it")


def certbot_argv(platform: Platform, req: Request, force: bool = False) -> list[str]:
    argv = [platform.certbot, "certonly", "--authenticator", "nginx", "--non-interactive", "--agree-tos",
            "--cert-name", req.domain, "-d", req.domain, "--deploy-hook", DEPLOY_HOOK,
            "--force-renewal" if force else "--keep-until-expiring"]
    argv += ["--email", req.email] if req.email else ["--register-unsafely-without-email"]
    if req.server:
        argv += ["--server", req.server]
    return argv


_NOISE = ("Saving debug log", "Requesting a certificate", "Ask for help", "Some challenges have failed",
          "Plugins selected", "Account registered", "Renewing an existing certificate",
          "Certbot failed to authenticate some domains", "Encountered exception during recovery")


def certbot_reason(output: str) -> str:
    """certbot's own words for why it failed, without its boilerplate (at most 12 lines)."""
    lines = []
    for raw in output.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith(_NOISE) or stripped.startswith("- - -"):
            continue
        if stripped == "An unexpected error occurred:":
            continue
        lines.append(stripped)
    if not lines:
        return "certbot gave no reason"
    return "\n".join(lines[-12:])


# -- the command --

def _timers_wanted(platform: Platform) -> dict:
    units = [RENEW_TIMER] + ([platform.certbot_distro_timer] if platform.certbot_distro_timer else [])
    return systemd.states(*units)


def wait_for_tls(domain: str, timeout: float = 10.0) -> None:
    """nginx's reload is asynchronous: wait until 127.0.0.1:443 completes a TLS handshake."""

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the chain is the CA's business; here: is TLS being served
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", 443), timeout=2) as sock:
                with ctx.wrap_socket(sock, server_hostname=domain):
                    return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BingoHostError(f"nginx was reloaded with TLS for {domain} but does not answer "
                                     f"TLS on 127.0.0.1:443 ({exc})") from None
            time.sleep(0.2)


def already_enabled(cfg: Config, platform: Platform, req: Request) -> str | None:
    """Why nothing is needed (a message), or None when something is."""
    recorded = state.read_json(state.HTTPS_FILE) or {}
    if recorded.get("domain") != req.domain or recorded.get("server") != req.server:
        return None
    if not os.path.exists(state.cert_path(req.domain)):
        return None
    ctx = make_context(cfg, tls_domain=req.domain)
    if ctx.differs(ctx.managed("nginx-site.conf")):
        return None
    renew = _timers_wanted(platform)[RENEW_TIMER]
    if not (renew.is_enabled and renew.running):
        return None
    return f"HTTPS is already enabled for {req.domain}: nothing to do"


def certify(platform: Platform, req: Request, argv: list[str], site: str) -> None:
    """Run certbot; put back what it left changed in nginx's files; BingoHostError (nothing
    that serves changed) when no certificate came of it."""
    certbot_leftovers = reverter.Backup([site, NGINX_CONF])
    result = subp.run(argv, rcs=range(256), timeout=900, secrets=())
    restored = certbot_leftovers.restore()
    for path in restored:
        log.warning(f"certbot left {path} changed: put it back")
    if restored:
        reverter.config_test()
        service.systemctl("reload", reverter.SERVICE)
    if not result.ok or not os.path.exists(state.cert_path(req.domain)):
        reason = certbot_reason(result.stderr + "\n" + result.stdout)
        raise BingoHostError(
            f"certbot could not get a certificate for {req.domain} (exit {result.returncode}); "
            f"nginx still serves HTTP as before.\n{reason}\n(certbot's log: {CERTBOT_LOG})")


def serve_tls(ctx: Context, req: Request) -> None:
    """Record the domain and render nginx's site with TLS (`nginx -t`, or every file put back),
    reload nginx; the renewal units in place."""
    nginx_files = [mf for mf in ctx.managed_files() if mf.on_change == RELOAD_NGINX]
    record = {"domain": req.domain, "email": req.email, "server": req.server}
    try:
        with reverter.writing(ctx, [state.HTTPS_FILE] + [mf.path for mf in nginx_files]):
            ctx.change(f"record {req.domain} in {state.HTTPS_FILE}", lambda: state.write_json(
                state.HTTPS_FILE, {**record, "issued_at": dt.datetime.now(dt.timezone.utc)
                                   .isoformat(timespec="seconds")}))
            for mf in nginx_files:
                ctx.ensure_file(mf)
    except Exception as exc:
        raise BingoHostError(f"the certificate for {req.domain} was obtained (kept in "
                             f"{state.LETSENCRYPT_LIVE}/{req.domain}), but nginx's TLS site "
                             f"failed; nginx serves as before: {exc}") from None
    reverter.serve(ctx)
    renew_units = [ctx.managed("certbot-renew.service"), ctx.managed("certbot-renew.timer")]
    if [mf for mf in renew_units if ctx.ensure_file(mf)]:
        ctx.change("systemctl daemon-reload", service.daemon_reload)
        ctx.done(DAEMON_RELOAD)  # owed since the write


def enable(cfg: Config, platform: Platform, req: Request, dry_run: bool = False) -> int:
    """Every change goes through the context, so a dry run says what this run would do."""
    site = f"{platform.nginx_conf_d}/{cfg.app.name}.conf"
    if not os.path.exists(site):
        raise BingoHostError(f"{site} does not exist: run `bingo-host bootstrap` first")
    if not systemd.states(reverter.SERVICE)[reverter.SERVICE].running:
        raise BingoHostError("nginx is not running: run `bingo-host bootstrap` first "
                             "(certbot validates through the running nginx)")
    if cfg.app.server_name == ("_",):
        log.info(f"note: app.server_name is '_': the site answers every name; the certificate "
                 f"covers {req.domain} only")
    with host_lock():
        done = already_enabled(cfg, platform, req)
        if done:
            log.info(done)
            return 0
        recorded = state.read_json(state.HTTPS_FILE)
        force = bool(recorded and recorded.get("domain") == req.domain
                     and recorded.get("server") != req.server
                     and os.path.exists(state.cert_path(req.domain)))
        argv = certbot_argv(platform, req, force=force)
        ctx = make_context(cfg, dry_run=dry_run, tls_domain=req.domain)
        if not certbot_installed(platform):
            ctx.change(f"install certbot ({platform.certbot})", lambda: install_certbot(platform))
        source = req.server or "Let's Encrypt"
        ctx.change(f"request a certificate for {req.domain} from {source}: {' '.join(argv)}",
                   lambda: certify(platform, req, argv, site))
        serve_tls(ctx, req)
        if not dry_run:
            wait_for_tls(req.domain)
        timers = _timers_wanted(platform)
        renew = timers[RENEW_TIMER]
        if not (renew.is_enabled and renew.running):
            ctx.change(f"enable --now {RENEW_TIMER}",
                       lambda: service.systemctl("enable", "--now", RENEW_TIMER))
        distro = platform.certbot_distro_timer
        if distro and timers[distro].load == "loaded" and (timers[distro].is_enabled
                                                           or timers[distro].running):
            ctx.change(f"disable --now {distro} ({RENEW_TIMER} renews)",
                       lambda: service.systemctl("disable", "--now", distro))
    if dry_run:
        log.info(f"enable-https (dry run): {len(ctx.changes)} changes; nothing was changed")
    else:
        log.info(f"HTTPS enabled for {req.domain}: https://{req.domain}/ (HTTP redirects to it)")
    return 0
