"""The virtualenvs releases share: one per requirements hash under <root>/venvs/, built by the
build account (builder.py) with uv and complete only once root sealed it and wrote its marker.

uv is bingo-host's own pinned copy (bin/uv beside the python running bingo-host; a dependency in
setup.cfg). Its cache, the build account's, is <root>/uv-cache: on the virtualenvs' file system,
so an install links files instead of copying them. A build first runs offline, from that cache
alone (no index request at all: a warm rebuild takes under a second), and online only when that
fails (the cache lacks something; a failure of another kind fails again online, and is reported
from there). The bytecode of every installed module is compiled then, by the account,
in the build's scope: no worker pays for it after a switch.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import subp
from ..errors import CommandError
from ..ops import files
from ..ops.cleanup import Cleanup
from . import DeployError, builder

log = logging.getLogger(__name__)

VENV_COMPLETE = ".bingo-venv-complete"
OVERRIDES = "overrides.txt"  # app.requirement_overrides, in the build's scratch directory


def uv_binary() -> str:
    """bingo-host's own uv: bin/uv of the virtualenv bingo-host runs from."""
    path = os.path.join(os.path.dirname(sys.executable), "uv")
    if not os.access(path, os.X_OK):
        raise DeployError(f"uv is not installed beside bingo-host ({path}): reinstall bingo-host "
                          "(uv is one of its dependencies)")
    return path


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


def requirements_hash(reqs: list[str], python_ver: str, overrides: Sequence[str] = ()) -> str:
    """sha256 of the interpreter version, every requirement file and the overrides (none: the
    hash virtualenvs had before overrides existed, so they are still reused)."""
    h = hashlib.sha256()
    h.update(f"python {python_ver}\n".encode())
    for path in reqs:
        data = Path(path).read_bytes().replace(b"\r\n", b"\n")
        h.update(f"{os.path.basename(path)} {len(data)}\n".encode())
        h.update(data)
    if overrides:
        text = "".join(f"{line}\n" for line in overrides)
        h.update(f"overrides {len(text)}\n{text}".encode())
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


def venv_argv(uv: str, cache: str, python: str, venv: str) -> list[str]:
    """A bare virtualenv (no pip: uv installs into it) on the host's python; no config file."""
    return [uv, "venv", "--no-config", "--no-python-downloads", "--cache-dir", cache, "--python",
            python, "--quiet", venv]


def install_argv(uv: str, cache: str, venv: str, reqs: Sequence[str], overrides: str | None,
                 offline: bool) -> list[str]:
    """uv pip install of every requirement file at once, linking from the cache, compiling
    bytecode; `overrides` a file of app.requirement_overrides or None. No config file is read:
    the release (the working directory) cannot change how it is built."""
    argv = [uv, "pip", "install", "--no-config", "--python", f"{venv}/bin/python",
            "--cache-dir", cache, "--link-mode", "hardlink", "--compile-bytecode",
            "--system-certs", "--no-python-downloads", "--no-progress"]
    argv += ["--offline"] if offline else []
    argv += [arg for path in reqs for arg in ("-r", path)]
    return argv + (["--override", overrides] if overrides else [])


def _why(exc: CommandError) -> str:
    """Why an offline run failed, in a line: what uv said about its cache or the network."""
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
    told = [line for line in lines if "cache" in line or "network" in line] or lines[-1:]
    return (told[0] if told else f"exit {exc.returncode}")[:200]


def failed(exc: CommandError) -> DeployError:
    """The install's failure: uv's headline (`× Failed to build `mysql==0.0.2``) first, then
    the last lines it wrote (the build's own error)."""
    lines = [line.rstrip() for line in exc.stderr.splitlines() if line.strip()]
    headline = next((line.strip() for line in lines if line.lstrip().startswith(("×", "error:"))),
                    f"exit {exc.returncode}")
    tail = "".join(f"\n  {line.strip()[:300]}" for line in lines[-5:] if line.strip() != headline)
    return DeployError(f"uv pip install failed (exit {exc.returncode}): {headline[:300]}{tail}")


def ensure_venv(venvs: str, cache: str, release_dir: str, python: str,
                scope: Sequence[str] = (), overrides: Sequence[str] = ()) -> tuple[str, str, bool]:
    """(venv path, requirements hash, reused): the shared virtualenv under `venvs` for
    release_dir's requirements and `overrides` (app.requirement_overrides), built by the build
    account (builder.py) with `scope` (builder.build_scope()) before each command and uv's
    cache at `cache`.

    A virtualenv is complete only once its marker exists (written by root after uv succeeded
    and the virtualenv was sealed root's); an incomplete one (uv failed, or the process was
    killed) is removed and built again. One whose seal began (its top is root's) may have left
    some of a package's files in the cache root's and others not, which uv cannot link: the
    cache goes too.
    """
    reqs = requirement_files(release_dir)
    refuse_editable(reqs)
    digest = requirements_hash(reqs, python_version(python), overrides)
    venv = f"{venvs}/{digest[:16]}"
    if os.path.exists(f"{venv}/{VENV_COMPLETE}"):
        log.info(f"virtualenv: reusing {venv} (requirements unchanged, no uv run)")
        return venv, digest, True
    uv = uv_binary()
    who = builder.account()
    if os.path.lexists(venv):
        log.info(f"virtualenv: removing incomplete {venv}")
        builder.stop(who)  # a killed build's uv may still be writing into it
        if os.lstat(venv).st_uid == 0:
            log.info(f"virtualenv: its seal was cut short; removing uv's cache {cache}")
            builder.forget(cache)
        shutil.rmtree(venv)
    os.makedirs(venvs, mode=0o755, exist_ok=True)
    log.info(f"virtualenv: requirements changed, building {venv} with {python} as {who.name}")
    inputs = {OVERRIDES: "".join(f"{line}\n" for line in overrides)} if overrides else {}
    with builder.workspace(who, digest[:16], inputs) as work, Cleanup() as undo:
        env = builder.environment(who, work, os.environ)

        def as_builder(argv: list[str], timeout: float, cwd: str):
            return subp.run(builder.command(who, argv, scope), timeout=timeout, cwd=cwd, env=env,
                            inherit_env=False)

        builder.keep(cache, who)
        undo.register(shutil.rmtree, venv, ignore_errors=True)
        undo.register(builder.stop, who)
        builder.lend(venv, who)
        as_builder(venv_argv(uv, cache, python, venv), 300, work)
        # The requirement files' relative paths (./vendor/x.tar.gz) resolve against the
        # working directory: a copy of the release, the account's, never the release itself.
        copy = f"{work}/app"
        as_builder(["cp", "-R", "--no-dereference", release_dir, copy], 300, work)
        copied = [f"{copy}/{os.path.basename(path)}" for path in reqs]
        pins = f"{work}/{OVERRIDES}" if overrides else None
        wanted = " ".join(f"-r {os.path.basename(p)}" for p in reqs)
        log.info(f"virtualenv: uv pip install {wanted}"
                 + (f" --override ({', '.join(overrides)})" if overrides else ""))
        # One run resolves every file together; any failure fails the deployment.
        try:
            result = as_builder(install_argv(uv, cache, venv, copied, pins, offline=True), 1800, copy)
        except CommandError as exc:
            log.info(f"virtualenv: not all in uv's cache ({_why(exc)}); installing online")
            try:
                result = as_builder(install_argv(uv, cache, venv, copied, pins, offline=False), 1800, copy)
            except CommandError as exc:
                raise failed(exc) from None
        builder.stop(who)
        undo.register(builder.forget, cache)  # a seal cut short: see the docstring
        count = builder.seal(venv, who.uid)
    for line in (result.stderr + result.stdout).splitlines():
        if line.startswith(("Resolved", "Prepared", "Installed", "Bytecode", " + ")):
            log.info(f"virtualenv: {line.strip()}")
    log.info(f"virtualenv: {count} entries sealed root's, read-only to others")
    files.write_atomic(f"{venv}/{VENV_COMPLETE}", digest + "\n", 0o644, "root", "root")
    return venv, digest, False
