"""The one place bingo-host runs commands.

Every command is an argv list (never a shell string), has a timeout and a set of allowed exit
codes, and is logged with secrets masked. Secrets travel on stdin or in files, never in argv,
so the mask is a second line of defence, not the first.
"""

from __future__ import annotations

import logging
import os
import subprocess
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
) -> Result:
    """Run argv; raise CommandError unless its exit status is in rcs.

    ``secrets`` are masked in the log line and in any error text. ``env`` is added to the
    current environment (LC_ALL=C is always set so parsers see untranslated output).
    """
    argv = tuple(str(a) for a in argv)
    secrets = tuple(secrets)
    logged = mask(" ".join(argv), secrets)
    log.debug("run: %s", logged)
    full_env = dict(os.environ, LC_ALL="C")
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
