"""Building releases/<name> from the staging directory: code sealed root's, the shared
virtualenv linked, bingo.ini linked where the app reads it, the release record; renamed into place
only complete. Apart from releases.py so that reading releases (status) imports no build code."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
from collections.abc import Sequence

from .. import subp
from ..ops.cleanup import Cleanup
from . import DeployError
from .record import now
from .releases import Paths, current_name, write_record
from .virtualenvs import ensure_venv

log = logging.getLogger(__name__)


def ini_links(release_dir: str) -> list[str]:
    """Where the app looks for bingo.ini, relative to the release: musicbingo/bingo.ini (the
    app reads it from its options package's parent), and next to application.py (older apps)."""
    return ["bingo.ini"] + (["musicbingo/bingo.ini"] if os.path.isdir(f"{release_dir}/musicbingo") else [])


def normalise_tree(top: str) -> None:
    """Release files belong to root and are read-only to everyone else (the app cannot rewrite
    its own code): directories 0755, files 0644, or 0755 when any execute bit was set."""
    for dirpath, dirnames, filenames in os.walk(top):
        os.lchown(dirpath, 0, 0)
        os.chmod(dirpath, 0o755)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, 0, 0)
            if os.path.islink(path) or name in dirnames:
                continue
            os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)


def compile_bytecode(release_dir: str, python: str, scope: Sequence[str] = ()) -> None:
    """The release's own modules compiled once, at build, in `scope`: the app cannot write its
    release, so without this every worker compiled them again at each start. Root runs it:
    compiling parses and writes bytecode, it never runs the code (py_compile), and the build
    account must never write the release (a .pyc of its making would be code no manifest
    covers). compileall follows no link to a directory, and unpacking refused links out of the
    revision. A file that does not compile is left to Python, which compiles it at import."""
    result = subp.run([*scope, python, "-I", "-m", "compileall", "-q", "-j", "0", release_dir],
                      rcs=(0, 1), timeout=600)
    if result.returncode:
        told = (result.stdout + result.stderr).strip().splitlines()
        log.warning(f"release: some modules did not compile ({'; '.join(told[:3])[:300]}); "
                    "Python compiles them at import")


def build(paths: Paths, name: str, record: dict, python: str, app_user: str,
          scope: Sequence[str] = (), overrides: Sequence[str] = ()) -> dict:
    """releases/<name> from the staging directory: code and its bytecode, venv link, bingo.ini
    link, record (the virtualenv built in `scope`, see builder.build_scope(), with `overrides`:
    app.requirement_overrides).

    Built as releases/.<name>.partial and renamed into place last, so releases/<name> exists
    only complete. The serving release is never touched.
    """
    final, partial = paths.release(name), paths.partial(name)
    if current_name(paths) == name:
        raise DeployError(f"release {name} is serving; a deployment cannot rebuild it")
    if not os.path.isfile(f"{paths.staging}/application.py"):
        raise DeployError(f"{paths.staging}/application.py is missing: the Install step copied no "
                          "application (check appspec.yml's files destination)")
    for leftover in (final, partial):
        if os.path.lexists(leftover):
            log.info(f"release: removing leftover {leftover}")
            shutil.rmtree(leftover)
    with Cleanup() as undo:
        os.rename(paths.staging, partial)
        undo.register(shutil.rmtree, partial, ignore_errors=True)
        os.mkdir(paths.staging, 0o755)
        links = ini_links(partial)
        for link in ["venv", *links]:
            if os.path.lexists(f"{partial}/{link}"):
                raise DeployError(f"the revision carries its own {link}; it must not (it is linked in here)")
        compile_bytecode(partial, python, scope)
        normalise_tree(partial)
        venv, digest, reused = ensure_venv(paths.venvs, paths.uv_cache, partial, python, scope,
                                           overrides)
        os.symlink(venv, f"{partial}/venv")
        for link in links:
            os.symlink(paths.shared_ini, f"{partial}/{link}")
        # The app reads bingo.ini (0640, app user) through the link; check it can.
        st = os.stat(paths.shared_ini)
        if st.st_uid != pwd.getpwnam(app_user).pw_uid and st.st_gid != grp.getgrnam(app_user).gr_gid:
            log.warning(f"release: {paths.shared_ini} is not readable by {app_user}")
        record = dict(record, schema=1, id=name, created_at=now(), requirements_hash=digest, venv=venv,
                      venv_reused=reused, activated_at=None, validated_at=None, failed=None)
        write_record(partial, record)
        os.rename(partial, final)
    log.info(f"release: built {final} ({'reused' if reused else 'new'} virtualenv {os.path.basename(venv)})")
    return record
