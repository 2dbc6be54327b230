"""Where bingo-host's story is told: every module logs to its own logger
(``logging.getLogger(__name__)``); the CLI calls ``install`` once, which sends the ``bingo_host``
tree to the terminal (plain progress lines on stdout) and, with ``journal``, to the journal too,
so a command's output and its journal entries are the same records. Other libraries' warnings
go to stderr. Tests read the records through pytest's ``caplog``.
"""

from __future__ import annotations

import logging
import os
import sys

PACKAGE = "bingo_host"
JOURNAL_SOCKET = "/dev/log"


class _Console(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (click's test runner and
    pytest swap it), INFO as the bare message, other levels prefixed with theirs."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return text
        return f"{record.levelname.lower()}: {text}"


def _not_ours(record: logging.LogRecord) -> bool:
    return not (record.name == PACKAGE or record.name.startswith(PACKAGE + "."))


def install(verbose: bool = False, journal: bool = False) -> None:
    """Set up the handlers; calling it again replaces them (never a record printed twice)."""
    root = logging.getLogger()
    package = logging.getLogger(PACKAGE)
    for logger in (root, package):
        for handler in [h for h in logger.handlers if getattr(h, "_bingo_host", False)]:
            logger.removeHandler(handler)

    libraries = logging.StreamHandler()  # stderr, as it is when the handler is made
    libraries.setLevel(logging.DEBUG if verbose else logging.WARNING)
    libraries.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    libraries.addFilter(_not_ours)
    _add(root, libraries)

    package.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = _Console()
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    _add(package, console)
    if journal:
        to_journal()


def stdout_is_journal() -> bool:
    """True when stdout is a journal stream already (a systemd unit's, by default): systemd says
    which in $JOURNAL_STREAM, "device:inode" (systemd.exec(5))."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # replaced by a test runner, or closed
        return False
    return os.environ.get("JOURNAL_STREAM") == f"{st.st_dev}:{st.st_ino}"


def to_journal() -> None:
    """Also send the package's records (INFO and up) to the journal, through /dev/log; a host
    without a syslog socket (a container, a build machine) keeps the terminal only, and a
    systemd unit's stdout, which is the journal, is not told every line twice."""
    if stdout_is_journal():
        return
    import logging.handlers  # socket, pickle, queue: ~7 ms that --help and status do not pay

    package = logging.getLogger(PACKAGE)
    if any(isinstance(h, logging.handlers.SysLogHandler) for h in package.handlers):
        return
    if not os.path.exists(JOURNAL_SOCKET):
        return
    handler = logging.handlers.SysLogHandler(address=JOURNAL_SOCKET)
    handler.ident = "bingo-host: "
    handler.setLevel(logging.INFO)
    _add(package, handler)


def _add(logger: logging.Logger, handler: logging.Handler) -> None:
    handler._bingo_host = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
