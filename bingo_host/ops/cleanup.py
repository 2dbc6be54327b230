"""Undo on failure, in one place: cleanups registered while a body runs are run
last-in-first-out when the body raises, or when the process gets SIGTERM or SIGHUP (which raise
``Stopped`` in the body), as certbot's ErrorHandler does. So a `bingo-host hook` the agent stops
marks its deployment record failed and removes what it half made instead of vanishing mid-step.

    with Cleanup() as undo:
        make(path)
        undo.register(shutil.rmtree, path)
        ...

On success nothing registered runs. A cleanup that fails is logged and the others still run.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A termination signal arrived while a Cleanup was active; ``signum`` names it. A
    BaseException, like KeyboardInterrupt, so ``except Exception`` never swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class Cleanup:
    def __init__(self) -> None:
        self._funcs: list[tuple[Callable[..., Any], tuple, dict]] = []
        self._saved: dict[int, Any] = {}
        self._late: list[int] = []

    def register(self, fn: Callable[..., Any], *args, **kwargs) -> Callable[[], None]:
        """Run ``fn(*args, **kwargs)`` if the body fails; returns a function that cancels it
        (for what is no longer to be undone, e.g. a file renamed into place)."""
        entry = (fn, args, kwargs)
        self._funcs.append(entry)

        def cancel() -> None:
            if entry in self._funcs:
                self._funcs.remove(entry)
        return cancel

    def __enter__(self) -> "Cleanup":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._saved[signum] = signal.signal(signum, self._stop)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None:
                for signum in self._saved:  # a second signal waits until the cleanups ran
                    signal.signal(signum, self._later)
                self._run()
        finally:
            for signum, handler in self._saved.items():
                signal.signal(signum, handler)
            self._saved.clear()
        if self._late and not isinstance(exc, Stopped):
            raise Stopped(self._late[0]) from exc
        return False

    def _run(self) -> None:
        while self._funcs:
            fn, args, kwargs = self._funcs.pop()
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("cleanup %s failed", getattr(fn, "__qualname__", fn))

    @staticmethod
    def _stop(signum, _frame) -> None:
        raise Stopped(signum)

    def _later(self, signum, _frame) -> None:
        self._late.append(signum)
