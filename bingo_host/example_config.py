"""The commented example config, shipped in the package (`bingo-host config init` writes it).

The source is examples/config.yaml; setup.cfg ships it as bingo_host/examples/config.yaml, so an
operator who installed only the wheel has it too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import BingoHostError


def path() -> Path:
    """The installed copy, else the source tree's (a checkout runs from the tree)."""
    packaged = Path(__file__).with_name("examples") / "config.yaml"
    return packaged if packaged.is_file() else Path(__file__).resolve().parent.parent / "examples" / "config.yaml"


def write(dest: str | Path) -> Path:
    """The example at dest, 0600; its parent made 0755 if missing. Never replaces anything at
    dest (a file, a link, even a dangling one): exit 1 and one line instead."""
    dest = Path(dest)
    text = path().read_bytes()
    exists = BingoHostError(f"{dest}: exists; not overwritten (edit it, or move it away first)")
    try:
        if not dest.parent.is_dir():
            if os.path.lexists(dest.parent):
                raise BingoHostError(f"{dest.parent}: not a directory")
            dest.parent.mkdir(mode=0o755, parents=True)
            os.chmod(dest.parent, 0o755)  # mkdir's mode passes through the umask
        if os.path.lexists(dest):
            raise exists
        fd, tmp = tempfile.mkstemp(prefix=".config-init-", dir=dest.parent)  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, dest)  # atomic, and refuses a name that appeared since the check
        except FileExistsError:
            raise exists from None
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise BingoHostError(f"{exc.filename or dest}: {exc.strerror or exc}") from None
    return dest
