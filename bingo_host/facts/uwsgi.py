"""uWSGI facts: the pyuwsgi version in bingo-host's uWSGI virtualenv, the app's running workers
(and the release each runs), and the user the installed vassal file makes the app's master run
its workers as (a master drops privileges once, so the
uwsgi step must know who the running one dropped to before it rewrites the file)."""

from __future__ import annotations

import glob
import os
import re

from ..regular_file import NotRegularFile, read_regular


def installed_pyuwsgi(venv: str) -> str | None:
    """The pyuwsgi version installed in venv, from its dist-info directory name."""
    for path in glob.glob(f"{venv}/lib/python3*/site-packages/pyuwsgi-*.dist-info"):
        m = re.match(r"pyuwsgi-(.+)\.dist-info$", os.path.basename(path))
        if m:
            return m.group(1)
    return None


def vassal_user(path: str) -> str | None:
    """The `uid =` of the vassal file at path; None when there is none, or no regular file
    (never read through a link: the vassals directory is root's, but a reader stays a reader)."""
    try:
        found = read_regular(path)
    except NotRegularFile:
        return None
    m = found and re.search(rb"^uid = (\S+)$", found[0], re.M)
    return m.group(1).decode() if m else None


def workers(releases: str, uid: int) -> list[tuple[int, str]]:
    """(pid, cwd) of the app's uWSGI workers: processes of the app user in a directory under
    `releases` (each worker enters `current` as it starts; the master stays outside them)."""
    import psutil  # here: `bingo-host hook` imports this, only ApplicationStart asks (measured: ~11 ms)

    prefix = os.path.realpath(releases) + "/"
    out = []
    for p in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            if "uwsgi" not in " ".join(p.info["cmdline"] or ()):
                continue
            cwd = p.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd.startswith(prefix):
            out.append((p.info["pid"], cwd))
    return out
