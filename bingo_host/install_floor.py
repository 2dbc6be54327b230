"""`python3.11 -m bingo_host.install_floor WHEEL VENV`: cfn-init's install of the stack's wheel.

cfn-init runs it from the wheel itself (PYTHONPATH=WHEEL) with the host's bare Python, on every
boot of a new instance and again on every stack update cfn-hup sees. The stack's wheel is a
floor, not a pin: when the bingo-host that /usr/local/bin/bingo-host runs (or VENV's) is that
version or newer, because a deployment bundle upgraded it (deploy/upgrade.py), nothing is
installed. Otherwise the wheel goes into VENV with its dependencies at the versions of the lock
inside it (LOCK, scripts/lock-dependencies), so every host of a stack runs the same versions.
Standard library and bottom-layer modules only: nothing else is installed yet.

cfn-init then runs VENV's `bingo-host bootstrap`, which may be older than the linked one: it
hands over to the newer (defer_to_newer), so an older copy never converges the host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import zipfile
from typing import Iterator

from . import __version__, layout, subp, versions
from .errors import BingoHostError, ConfigError

log = logging.getLogger(__name__)

LOCK = "bingo_host/constraints.txt"  # the dependency lock's path inside the wheel
HANDED_OVER = "BINGO_HOST_HANDED_OVER"  # set for the newer copy: it never hands over again


@contextlib.contextmanager
def lock_file(wheel: str) -> Iterator[str]:
    """A private temporary copy of the wheel's lock, for pip's --constraint."""
    try:
        with zipfile.ZipFile(wheel) as z:
            text = z.read(LOCK)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise BingoHostError(f"{wheel}: no dependency lock {LOCK} in it ({exc})") from None
    with tempfile.NamedTemporaryFile(prefix="bingo-host-lock-", suffix=".txt") as f:
        f.write(text)
        f.flush()
        yield f.name


def pip_install(python: str, wheel: str, *options: str, timeout: float = 900) -> None:
    """pip install the wheel with the python of a virtualenv, dependencies as the wheel's lock pins."""
    with lock_file(wheel) as lock:
        subp.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                  "--upgrade", "--constraint", lock, *options, wheel], timeout=timeout)


def installed_version(venv: str) -> str | None:
    """The newest bingo-host installed: what the link runs, or the virtualenv's own."""
    found = [v for v in (versions.installed(layout.BIN), versions.installed(f"{venv}/bin/bingo-host"))
             if v is not None]
    return max(found, key=versions.key, default=None)


def install(wheel: str, venv: str) -> str:
    """Install the wheel into venv unless a bingo-host as new is installed; says which."""
    version = versions.of_wheel(wheel)
    have = installed_version(venv)
    if not versions.newer(version, have):
        return (f"bingo-host {have} is installed; the stack's wheel ({version}) is not newer, "
                "so it is kept")
    if not os.access(f"{venv}/bin/python", os.X_OK):
        raise ConfigError("VENV", f"{venv}/bin/python: no virtualenv there")
    pip_install(f"{venv}/bin/python", wheel)
    return f"bingo-host {version} installed in {venv} (was {have or 'not installed'})"


def defer_to_newer() -> None:
    """Re-run this command with /usr/local/bin/bingo-host when that is a newer bingo-host than
    this copy (this process is replaced); return when this copy is the newest."""
    linked = versions.installed(layout.BIN)
    if linked is None or not versions.newer(linked, __version__) or os.environ.get(HANDED_OVER):
        return
    log.info(f"bingo-host {linked} at {layout.BIN} is newer than this {__version__} "
             f"({sys.argv[0]}): running it instead")
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[HANDED_OVER] = __version__
    os.execv(layout.BIN, [layout.BIN, *sys.argv[1:]])


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(argv) != 2:
        print("usage: python3 -m bingo_host.install_floor WHEEL VENV", file=sys.stderr)
        return 2
    try:
        print(install(*argv))
    except ValueError as exc:
        print(f"WHEEL: {exc}", file=sys.stderr)
        return 2
    except BingoHostError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
