"""The one place bingo-host runs commands.

Every command is an argv list (never a shell string), has a timeout and a set of allowed exit
codes, and is logged with secrets masked. Secrets travel on stdin or in files, never in argv,
so the mask is a second line of defence, not the first.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .errors import CommandError

log = logging.getLogger(__name__)

MASK = "*****"


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every (non-empty) secret in text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def run(
    argv: Sequence[str],
    *,
    rcs: Iterable[int] = (0,),
    timeout: float = 300,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    cwd: str | None = None,
    inherit_env: bool = True,
) -> Result:
    """Run argv; raise CommandError unless its exit status is in rcs.

    ``secrets`` are masked in the log line and in any error text. ``env`` is added to the
    current environment, or is the whole environment with inherit_env=False (LC_ALL=C is always
    set so parsers see untranslated output).
    """
    argv = tuple(str(a) for a in argv)
    secrets = tuple(secrets)
    logged = mask(" ".join(argv), secrets)
    log.debug("run: %s", logged)
    full_env = dict(os.environ if inherit_env else {}, LC_ALL="C")
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CommandError(logged, 127, f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(logged, -1, f"timed out after {timeout:g} s") from exc
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if proc.returncode not in tuple(rcs):
        raise CommandError(logged, proc.returncode, mask(proc.stderr or proc.stdout, secrets))
    return result


class Streaming:
    """A command whose stdin or stdout is a pipe the caller streams through (a dump, a load):
    data too large for run()'s memory. stderr goes to a temporary file (no pipe to fill up and
    stall the child); a `with` block that fails kills the command."""

    def __init__(self, argv: Sequence[str], *, stdin: bool = False, stdout: bool = False):

        self.argv = tuple(str(a) for a in argv)  # never a secret: those go in option files
        self.logged = " ".join(self.argv)
        log.debug("start: %s", self.logged)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=self._stderr,
                env=dict(os.environ, LC_ALL="C"))
        except FileNotFoundError as exc:
            self._stderr.close()
            raise CommandError(self.logged, 127, f"{self.argv[0]}: not found") from exc

    def finish(self, timeout: float = 300) -> Result:
        """Close stdin, wait, and raise CommandError unless it exited 0."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise CommandError(self.logged, -1, f"timed out after {timeout:g} s") from exc
        self._stderr.seek(0)
        err = self._stderr.read(64 * 1024).decode(errors="replace")
        if rc != 0:
            raise CommandError(self.logged, rc, err)
        return Result(self.argv, rc, "", err)

    def __enter__(self) -> "Streaming":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if self.proc.poll() is None and exc_type is not None:
            self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                try:
                    pipe.close()
                except BrokenPipeError:  # the child died with data still buffered for it
                    pass
        self.proc.wait()
        self._stderr.close()
