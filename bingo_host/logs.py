"""Where bingo-host's story is told: every module logs to its own logger
(``logging.getLogger(__name__)``); the CLI calls ``install`` once, which sends the ``bingo_host``
tree to the terminal (plain progress lines on stdout) and, with ``journal``, to the journal too,
so a command's output and its journal entries are the same records. Other libraries' warnings
go to stderr. Tests read the records through pytest's ``caplog``.

In the journal (its native socket; syslog's /dev/log where there is none), each entry carries
fields besides its MESSAGE, so `journalctl -t bingo-host COMMAND=restore` or `OUTCOME=failed`
finds a run: the run's own (``set_fields``: COMMAND, DEPLOYMENT_ID, STEP for a hook's event),
a record's (``extra={"journal": {"STEP": ...}}``) and LOGGER, the module that logged it. The CLI
ends each run that changes the host with an entry of its OUTCOME (``outcome``), journal only.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys

PACKAGE = "bingo_host"
JOURNAL_SOCKET = "/dev/log"
JOURNALD_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "bingo-host"
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

_fields: dict[str, str] = {}  # every journal entry of this run carries them


def set_fields(**fields: str | None) -> None:
    """Fields of every later journal entry of this run (None: no longer)."""
    for key, value in fields.items():
        if value is None:
            _fields.pop(key, None)
        else:
            _fields[key] = str(value)


def outcome(message: str, **fields: str) -> None:
    """The run's last journal entry: how it ended (never on the terminal)."""
    level = logging.INFO if fields.get("OUTCOME") in ("ok", "dry-run") else logging.ERROR
    logging.getLogger(PACKAGE).log(level, message, extra={"journal": fields, "journal_only": True})


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

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "journal_only", False):
            super().emit(record)

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
    _fields.clear()
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
    """Also send the package's records (INFO and up) to the journal: through its own socket,
    with fields; else through /dev/log (message only); a host with neither (a container, a build
    machine) keeps the terminal only. Under a systemd unit, whose stdout is the journal already,
    each record reaches it once: through the socket with its fields, the stdout copy dropped;
    with /dev/log only, the stdout copy is the one kept."""
    package = logging.getLogger(PACKAGE)
    if any(isinstance(h, Journald) or type(h).__name__ == "SysLogHandler" for h in package.handlers):
        return
    if os.path.exists(JOURNALD_SOCKET):
        handler: logging.Handler = Journald(JOURNALD_SOCKET)
        if stdout_is_journal():
            for console in [h for h in package.handlers if isinstance(h, _Console)]:
                package.removeHandler(console)
    elif stdout_is_journal():
        return
    elif os.path.exists(JOURNAL_SOCKET):
        from logging.handlers import SysLogHandler  # pickle, queue: ~7 ms --help does not pay

        handler = SysLogHandler(address=JOURNAL_SOCKET)
        handler.ident = f"{IDENTIFIER}: "
    else:
        return
    handler.setLevel(logging.INFO)
    _add(package, handler)


class Journald(logging.Handler):
    """journald's native protocol: one datagram an entry, KEY=value lines (a value with a
    newline in it as KEY, newline, its length as 64-bit little-endian, the value, newline)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sock.sendto(encode(entry(record)), self.path)
        except Exception:  # the journal is the second copy: never a traceback for it
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def close(self) -> None:
        self.sock.close()
        super().close()


def entry(record: logging.LogRecord) -> dict[str, str]:
    fields = {"MESSAGE": record.getMessage(), "PRIORITY": str(PRIORITY.get(record.levelno, 6)),
              "SYSLOG_IDENTIFIER": IDENTIFIER, "LOGGER": record.name, **_fields}
    fields.update({k: str(v) for k, v in (getattr(record, "journal", None) or {}).items()})
    return fields


def encode(fields: dict[str, str]) -> bytes:
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def _add(logger: logging.Logger, handler: logging.Handler) -> None:
    handler._bingo_host = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
