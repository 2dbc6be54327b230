"""The app's first request, once, in one process, before any worker of a release serves.

The app binds its database on each worker's first request (a before_request handler): it creates
its tables and, when its User table is empty and `create_superuser` is on, an admin account,
unguarded. Right after a release is switched to, every worker is fresh, so concurrent first
requests bind at once and the losers answer 500 (a table or the account made twice). So
ApplicationStart, before the switch, sends one request through the release's app object in a
single process: the tables and the account exist before two workers can race, and a release
whose bind fails is never switched to (the old one keeps serving). The app's bind is idempotent
once they exist, so a second run of the same release is harmless.

The process is what a uWSGI worker is, minus the socket: the health wrapper's interpreter (the
vassal's python), the release's virtualenv and the wrapper's directory on its path, the release
as working directory, the wrapper imported (it imports application:app from there), the same
bingo.ini, the app user's uid and groups (never root: root never runs the app's code) with
no_new_privs, a clean environment, in a transient scope like the build's (a fifth of the
services' CPU and IO weight, memory bounded, so the serving release keeps its latency) that also
denies the metadata service as the emperor's unit does; the app user's firewall rules apply.
Its output is never logged (the app prints its database URL, password included); a failure is
one line: the app's own exception, secrets masked.
"""

from __future__ import annotations

import configparser
import grp
import logging
import os
import pwd
import time

from .. import layout, subp
from ..errors import CommandError
from ..regular_file import read_regular
from . import DeployError, env_seconds
from .builder import build_scope

log = logging.getLogger(__name__)

TIMEOUT = 120.0  # $BINGO_HOST_FIRST_BIND_TIMEOUT; ApplicationStart has 300 s, the switch needs the rest
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # systemd's, as the emperor's
ANSWERED, ERROR = 0, 3  # the runner's exit codes: answered below 500; answered 5xx or not at all
SECRET_KEYS = ("passwd", "password", "secret_key")  # bingo.ini's values no error may show

# Runs as the app user in the health wrapper's interpreter (standard library only): the vassal's
# load of the release, then the wrapper's one GET through the app object itself. os._exit: the app
# may have started threads that never end.
RUNNER = r"""
import glob, importlib, os, sys
release, health_dir, module, path = sys.argv[1:5]
sys.path[0:0] = [health_dir] + sorted(glob.glob(release + "/venv/lib/python3*/site-packages"))
said = importlib.import_module(module).first_request(path)
sys.stdout.flush()
print(f"first bind: GET {path} answered {said}", file=sys.stderr, flush=True)
os._exit(0 if said[:1] in ("1", "2", "3", "4") else 3)
"""


def command(release: str, health_path: str, uid: int, gid: int, scope: list[str]) -> list[str]:
    """The runner's argv: as uid/gid (their initgroups, no_new_privs) in `scope`, in a clean
    environment, in the vassal's interpreter."""
    if uid == 0 or gid == 0:
        raise DeployError("the app's first bind would run as root; the app user must be unprivileged")
    return [*scope, "setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--no-new-privs",
            "--", "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", f"BINGO_HEALTH_PATH={health_path}",
            f"{layout.UWSGI_VENV}/bin/python", "-I", "-c", RUNNER, release, layout.HEALTH_WSGI_DIR,
            layout.HEALTH_MODULE, health_path]


def sandbox(scope: list[str], firewall: bool) -> list[str]:
    """The build's scope, denying the metadata service too when the firewall is on (the
    emperor's IPAddressDeny; the nftables rules match the app user wherever it runs)."""
    if not scope or not firewall:
        return scope
    return [*scope[:-1], "-p", f"IPAddressDeny={layout.IMDS_ADDRESS} {layout.IMDS_ADDRESS_IPV6}", scope[-1]]


def app_error(stderr: str) -> str:
    """What the app said went wrong: the exception line of its last traceback (a multi-line
    message's first line), else its last line."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        said = next((line for line in lines[starts[-1] + 1:] if line.strip() and not line[0].isspace()),
                    None)
        if said:
            return said.strip()
    rest = [line.strip() for line in lines if line.strip()]
    return rest[-1] if rest else "no output"


def ini_secrets(path: str) -> list[str]:
    """bingo.ini's passwords and secret key, as written and as the app reads them ('%%' is '%')."""
    try:
        found = read_regular(path)
    except OSError:
        return []
    ini = configparser.RawConfigParser()
    try:
        ini.read_string(found[0].decode(errors="replace") if found else "")
    except configparser.Error:
        return []
    values = [ini[s][k] for s in ini.sections() for k in SECRET_KEYS if ini[s].get(k)]
    return [v for value in values for v in {value, value.replace("%%", "%")}]


def run(ctx, release: str) -> None:
    """The release's first request, once (see the module's docstring); DeployError with the app's
    reason when it does not answer below 500."""
    cfg = ctx.cfg
    try:
        uid, gid = pwd.getpwnam(cfg.app.user).pw_uid, grp.getgrnam(cfg.app.user).gr_gid
    except KeyError:
        raise DeployError(f"the app user {cfg.app.user} or its group does not exist: run "
                          "`bingo-host bootstrap`") from None
    ctx.ensure_file(ctx.managed("health_wsgi.py"))  # the wrapper the workers will load
    scope = sandbox(build_scope(ctx.facts.mem_bytes, "the app's first bind"), cfg.firewall.enabled)
    argv = command(release, cfg.app.health_path, uid, gid, scope)
    secrets = ini_secrets(f"{cfg.app.root}/shared/bingo.ini")
    started = time.monotonic()
    try:
        result = subp.run(argv, rcs=range(256), cwd=release, env={"PATH": PATH}, inherit_env=False,
                          secrets=secrets, timeout=env_seconds("BINGO_HOST_FIRST_BIND_TIMEOUT", TIMEOUT))
    except CommandError as exc:  # timed out, or no such interpreter
        raise DeployError(f"the app's first bind in {os.path.basename(release)}: "
                          f"{str(exc).splitlines()[0]}") from None
    if result.returncode != ANSWERED:
        said = subp.mask(app_error(result.stderr), secrets)[:300]
        raise DeployError(f"the app's first request failed in {os.path.basename(release)} "
                          f"(exit {result.returncode}), so it is not switched to: {said}")
    log.info(f"first bind: {os.path.basename(release)} bound its database in one process "
             f"({time.monotonic() - started:.1f} s)")
