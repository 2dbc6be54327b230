"""The virtualenvs releases share: one per requirements hash under <root>/venvs/, built by the
build account (builder.py) and complete only once root sealed it and wrote its marker."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .. import layout, subp
from ..ops import files
from ..ops.cleanup import Cleanup
from . import DeployError, builder

log = logging.getLogger(__name__)

VENV_COMPLETE = ".bingo-venv-complete"


def python_version(python: str) -> str:
    return subp.run([python, "-I", "-c", "import sys; print(sys.version.split()[0])"], timeout=60).stdout.strip()


#: Requirement files for development only: never bundled or installed on a host.
DEV_REQUIREMENTS = ("dev-", "test-", "docs-")


def requirement_files(app_dir: str) -> list[str]:
    """The app's production requirement files in install order: requirements.txt, then every
    other *requirements*.txt by name (the real app keeps its database driver, mysqlclient, in
    mysql-requirements.txt), leaving out dev-/test-/docs- ones."""
    names = {os.path.basename(p) for p in glob.glob(f"{app_dir}/*requirements*.txt")}
    names = {n for n in names if not n.startswith(DEV_REQUIREMENTS)}
    if "requirements.txt" not in names:
        raise DeployError(f"{app_dir} has no requirements.txt next to application.py")
    return [f"{app_dir}/{n}" for n in ["requirements.txt"] + sorted(names - {"requirements.txt"})]


def requirements_hash(reqs: list[str], python_ver: str) -> str:
    h = hashlib.sha256()
    h.update(f"python {python_ver}\n".encode())
    for path in reqs:
        data = Path(path).read_bytes().replace(b"\r\n", b"\n")
        h.update(f"{os.path.basename(path)} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def refuse_editable(reqs: list[str]) -> None:
    """An editable requirement (-e) would tie the shared virtualenv to a directory that is not
    kept (the build's scratch copy of the release): refused, naming the line."""
    for path in reqs:
        for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
            if line.strip().startswith(("-e", "--editable")):
                raise DeployError(f"{os.path.basename(path)} line {number}: editable requirements "
                                  "(-e) are not supported: the virtualenv is shared by releases and "
                                  "built outside them; name the package's path (./pkg) instead")


def ensure_venv(venvs: str, release_dir: str, python: str,
                scope: Sequence[str] = ()) -> tuple[str, str, bool]:
    """(venv path, requirements hash, reused): the shared virtualenv under `venvs` for
    release_dir's requirements, built by the build account (builder.py) with `scope`
    (builder.build_scope()) before each command.

    A virtualenv is complete only once its marker exists (written by root after pip succeeded
    and the virtualenv was sealed root's); an incomplete one (pip failed, or the process was
    killed) is removed and built again.
    """
    reqs = requirement_files(release_dir)
    refuse_editable(reqs)
    digest = requirements_hash(reqs, python_version(python))
    venv = f"{venvs}/{digest[:16]}"
    if os.path.exists(f"{venv}/{VENV_COMPLETE}"):
        log.info(f"virtualenv: reusing {venv} (requirements unchanged, no pip run)")
        return venv, digest, True
    who = builder.account()
    if os.path.lexists(venv):
        log.info(f"virtualenv: removing incomplete {venv}")
        builder.stop(who)  # a killed build's pip may still be writing into it
        shutil.rmtree(venv)
    os.makedirs(venvs, mode=0o755, exist_ok=True)
    log.info(f"virtualenv: requirements changed, building {venv} with {python} as {who.name}")
    with builder.workspace(who, digest[:16], os.environ) as work, Cleanup() as undo:
        env = builder.environment(who, work, os.environ)

        def as_builder(argv: list[str], timeout: float, cwd: str):
            return subp.run(builder.command(who, argv, scope), timeout=timeout, cwd=cwd, env=env,
                            inherit_env=False)

        undo.register(shutil.rmtree, venv, ignore_errors=True)
        undo.register(builder.stop, who)
        builder.lend(venv, who)
        as_builder([python, "-I", "-m", "venv", venv], 300, work)
        # The requirement files' relative paths (./vendor/x.tar.gz) resolve against the
        # working directory: a copy of the release, the account's, never the release itself.
        copy = f"{work}/app"
        as_builder(["cp", "-R", "--no-dereference", release_dir, copy], 300, work)
        pip = [f"{venv}/bin/python", "-I", "-m", "pip", "--disable-pip-version-check", "--no-input"]
        args = [arg for path in reqs for arg in ("-r", f"{copy}/{os.path.basename(path)}")]
        log.info(f"virtualenv: pip install {' '.join(f'-r {os.path.basename(p)}' for p in reqs)} "
                 "(this can take minutes)")
        # One pip run resolves every file together; any failure fails the deployment. The
        # account's pip cache keeps built wheels (mysqlclient compiles from source) for the
        # next deployment.
        result = as_builder([*pip, "install", "--cache-dir", layout.BUILD_PIP_CACHE,
                             "--progress-bar", "off", *args], 1800, copy)
        builder.stop(who)
        count = builder.seal(venv)
    for line in result.stdout.splitlines():
        if line.startswith(("Successfully installed", "Requirement already satisfied")) \
                or line.startswith("Collecting"):
            log.info(f"virtualenv: {line.strip()}")
    log.info(f"virtualenv: {count} entries sealed root's, read-only to others")
    files.write_atomic(f"{venv}/{VENV_COMPLETE}", digest + "\n", 0o644, "root", "root")
    return venv, digest, False


