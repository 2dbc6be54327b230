"""Upgrading bingo-host from a revision's wheel when that wheel is newer (check_revision, in
events/before_install.py).

The new version goes into a virtualenv of its own beside the running one and must pass a smoke
test (`--version` names the new version, `config check` accepts this host's config) before
/usr/local/bin/bingo-host is switched to it. So a wheel that fails to install, or a new version
that cannot run, changes nothing: the deployment fails with the reason and the old toolkit keeps
working. Once switched, this hook re-executes itself with the new version, and the remaining
hooks (which call /usr/local/bin/bingo-host) run the new version too. The previous virtualenv
is kept (switch the link back to return to it); older ones are removed.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sys

from .. import __version__, layout, subp, versions
from ..install_floor import pip_install
from ..ops import files
from . import DeployError

log = logging.getLogger(__name__)

INSTALL_ROOT = "/opt/bingo-host"


def newer_wheel(archive: str) -> tuple[str, str] | None:
    """(wheel path, version) of the bundle's bingo-host wheel if it is newer than this one."""
    best = None
    for wheel in glob.glob(f"{archive}/bingo-host/bingo_host-*.whl"):
        try:
            version = versions.of_wheel(wheel)
        except ValueError:
            continue
        if best is None or versions.newer(version, best[1]):
            best = (wheel, version)
    if best is None or not versions.newer(best[1], __version__):
        return None
    return best


def _install(wheel: str, version: str, venv: str) -> None:
    """A fresh virtualenv with the wheel, smoke-tested; removed again on any failure."""
    if os.path.lexists(venv):
        shutil.rmtree(venv)
    try:
        subp.run([os.path.realpath(sys.executable), "-m", "venv", venv], timeout=300)
        pip_install(f"{venv}/bin/python", wheel, "--cache-dir", layout.PIP_CACHE)
        shown = subp.run([f"{venv}/bin/bingo-host", "--version"], timeout=60).stdout
        if version not in shown:
            raise DeployError(f"its --version says {shown.strip()!r}")
        subp.run([f"{venv}/bin/bingo-host", "config", "check"], timeout=60)
    except Exception as exc:
        shutil.rmtree(venv, ignore_errors=True)
        detail = str(exc).strip().splitlines()
        raise DeployError(f"bingo-host {version} from the bundle failed to install or run "
                          f"({detail[-1] if detail else type(exc).__name__}); this host keeps "
                          f"bingo-host {__version__}") from None
    log.info(f"bingo-host: {version} installed in {venv} and passed its smoke test")


def _prune(keep: set[str]) -> None:
    for venv in glob.glob(f"{INSTALL_ROOT}/venv-*"):
        if os.path.realpath(venv) not in keep:
            shutil.rmtree(venv, ignore_errors=True)
            log.info(f"bingo-host: removed old installation {venv}")


def maybe_upgrade(archive: str) -> None:
    """Upgrade from archive/bingo-host/*.whl if newer, then re-run this hook with the new version."""
    found = newer_wheel(archive)
    if found is None:
        return
    wheel, version = found
    if sys.prefix == sys.base_prefix:
        raise DeployError(f"the bundle carries bingo-host {version} but this bingo-host "
                          f"({__version__}) does not run from a virtualenv; upgrade it by hand")
    venv = f"{INSTALL_ROOT}/venv-{version}"
    log.info(f"bingo-host: upgrading {__version__} -> {version} (new virtualenv {venv})")
    _install(wheel, version, venv)
    files.symlink(layout.BIN, f"{venv}/bin/bingo-host")
    log.info(f"bingo-host: {layout.BIN} -> {venv}/bin/bingo-host; running this hook again with it")
    _prune({os.path.realpath(venv), os.path.realpath(sys.prefix)})
    sys.stdout.flush()
    # The new version finds the same wheel no newer than itself (checked by the smoke test).
    os.execv(f"{venv}/bin/bingo-host", [f"{venv}/bin/bingo-host", *sys.argv[1:]])
