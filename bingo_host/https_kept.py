"""HTTPS at bootstrap: with https.domain and https.email set, bootstrap obtains the certificate
through enable-https's path (certbot against https.server, Let's Encrypt by default), after its
steps. A replacement instance must not ask the CA again on every launch (Let's Encrypt issues 5
duplicate certificates a week) nor wait for DNS to point at it: certbot's state (/etc/letsencrypt:
the account, key, certificate and renewal config) and the HTTPS record are kept on the data volume
after each run, and a host with no certificate takes them back when they are for the same domain
and ACME server (a staging certificate never stands in for a production one) and not expired;
certbot (--keep-until-expiring) then leaves a certificate that is not due alone.
When no certificate can be had (on a stack's first launch the Elastic IP is associated only after
bootstrap), a transient timer runs bootstrap again every RETRY_EVERY until one is had.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time

from . import https, layout, state, subp
from .config import Config
from .deploy.kept import check_owned, make_owned, on_volume
from .errors import BingoHostError
from .facts import systemd
from .facts.platforms import Platform
from .status.records import cert_not_after

log = logging.getLogger(__name__)

LETSENCRYPT = "/etc/letsencrypt"
SUBDIR = "bingo-host/letsencrypt"  # on the data volume: TREE (a copy of LETSENCRYPT) and RECORD
TREE = "letsencrypt"
RECORD = "https.json"
MIN_SECONDS_LEFT = 86400  # a certificate about to expire is not worth taking back
RETRY = "bingo-host-https-retry"  # a transient timer (systemd-run): gone once a certificate is had
# Let's Encrypt allows 5 failed validations per account and host name an hour: 4 an hour at most.
RETRY_EVERY = "15min"


def wanted(cfg: Config) -> bool:
    return bool(cfg.https.domain and cfg.https.email)


def request(cfg: Config) -> https.Request:
    server = cfg.https.server
    staging = server == "staging"
    return https.validate(cfg, None, None, False, None if staging else server, staging)


def _digest(root: str) -> str | None:
    """What a tree holds (paths, modes, link targets, contents), for "is the kept copy current"."""
    if not os.path.isdir(root):
        return None
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, root)}\0{st.st_mode:o}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _source(server: str | None) -> str:
    return server or "Let's Encrypt"


def take_back(directory: str, req: https.Request, now: float | None = None) -> str | None:
    """The kept certbot state put back into LETSENCRYPT (and the HTTPS record) when this host has
    no certificate for req.domain; what was done or why not (None: the host has one)."""
    if os.path.exists(state.cert_path(req.domain)):
        return None
    check_owned(directory)
    kept = state.read_json(f"{directory}/{RECORD}")
    if not kept:
        return f"no certificate is kept in {directory}: asking {_source(req.server)}"
    if (kept.get("domain"), kept.get("server")) != (req.domain, req.server):
        return (f"the kept certificate is for {kept.get('domain')} from {_source(kept.get('server'))}, "
                f"not {req.domain} from {_source(req.server)}: not reused")
    try:
        left = cert_not_after(f"{directory}/{TREE}/live/{req.domain}/fullchain.pem") - (now or time.time())
    except (OSError, ValueError) as exc:
        return f"the kept certificate is unreadable ({exc}): not reused"
    if left < MIN_SECONDS_LEFT:
        return "the kept certificate has expired (or expires within a day): not reused"
    shutil.copytree(f"{directory}/{TREE}", LETSENCRYPT, symlinks=True, dirs_exist_ok=True)
    state.write_json(state.HTTPS_FILE, kept)
    return f"took back the certificate kept on the data volume ({left / 86400:.0f} days left)"


def keep(directory: str, req: https.Request) -> str | None:
    """LETSENCRYPT and the HTTPS record copied to directory (0700), swapped in whole; what was
    done, or None when the kept copy is current (or there is no certificate to keep)."""
    record = state.read_json(state.HTTPS_FILE)
    if not os.path.exists(state.cert_path(req.domain)) or not record or record.get("domain") != req.domain:
        return None
    if state.read_json(f"{directory}/{RECORD}") == record \
            and _digest(LETSENCRYPT) == _digest(f"{directory}/{TREE}"):
        return None
    check_owned(directory)
    new, old = f"{directory}.new", f"{directory}.old"
    shutil.rmtree(new, ignore_errors=True)
    make_owned(new)
    shutil.copytree(LETSENCRYPT, f"{new}/{TREE}", symlinks=True)
    state.write_json(f"{new}/{RECORD}", record, mode=0o600)
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(directory):
        os.rename(directory, old)
    os.rename(new, directory)
    shutil.rmtree(old, ignore_errors=True)
    return f"kept the certificate for {req.domain} on the data volume ({directory})"


def at_bootstrap(cfg: Config, platform: Platform, dry_run: bool = False) -> int:
    """After bootstrap's steps: the certificate (taken back from the data volume, or from the CA)
    and nginx's TLS site. A certificate that cannot be had is a warning, not a failed bootstrap:
    on a first launch DNS points at the instance only once the stack has it running."""
    req = request(cfg)
    directory = None if dry_run else on_volume(cfg, SUBDIR)
    if directory:
        _say("certificate", lambda: take_back(directory, req),
             f"the kept certificate is not usable (%s): asking {_source(req.server)}")
    try:
        https.enable(cfg, platform, req, dry_run=dry_run)
    except BingoHostError as exc:
        log.warning(f"https: no certificate for {req.domain}; the site serves HTTP only: {exc}")
        _say("retry", lambda: retry_later(dry_run), "cannot retry by itself (%s): once "
             f"{req.domain} points at this host, run `bingo-host bootstrap` again")
        return 0
    if directory:
        _say("kept", lambda: keep(directory, req), "could not keep the certificate on the data volume: %s")
    _say("retry", lambda: stop_retrying(dry_run), "could not stop the retry timer: %s")
    return 0


def retry_later(dry_run: bool = False) -> str:
    """Bootstrap again every RETRY_EVERY (a transient timer: it ends at the next boot) until a
    certificate is had; one timer, however many bootstraps fail."""
    timer = f"{RETRY}.timer"
    if not systemd.booted():
        raise BingoHostError("systemd is not running")
    if systemd.states(timer)[timer].running:
        return f"bootstrap runs again every {RETRY_EVERY} ({timer}) until a certificate is had"
    if not dry_run:
        subp.run(["systemd-run", f"--unit={RETRY}", f"--on-active={RETRY_EVERY}",
                  f"--on-unit-active={RETRY_EVERY}", "--description=bingo-host: HTTPS not set up yet, "
                  "bootstrap again", layout.BIN, "bootstrap"], timeout=60)
    return f"{'would run' if dry_run else 'runs'} bootstrap again every {RETRY_EVERY} ({timer}) until a " \
           "certificate is had"


def stop_retrying(dry_run: bool = False) -> str | None:
    """The retry timer stopped once a certificate is had (None: none was running)."""
    timer = f"{RETRY}.timer"
    if not systemd.booted() or not systemd.states(timer)[timer].running:
        return None
    if not dry_run:
        subp.run(["systemctl", "stop", timer], timeout=60)
    return f"{'would stop' if dry_run else 'stopped'} {timer}: the certificate is had"


def _say(status: str, fn, failed: str) -> None:
    """fn's words (if any) as an https line; its failure (failed % the reason) too: bootstrap goes on."""
    try:
        said = fn()
    except (OSError, BingoHostError) as exc:
        said = failed % exc
    if said:
        log.info(f"{'https':<10} {status:<12} {said}")
