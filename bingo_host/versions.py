"""PEP 440 ordering of bingo-host versions, and which version an installed bingo-host command is.

Standard library only: `install_floor` runs it from the stack's wheel under the host's bare
python3.11, before any dependency is installed, and `packaging` is none of bingo-host's
dependencies. It orders every public version and local label as packaging.version does
(tests/test_versions.py checks it against packaging), so 1.2.0rc1 < 1.2.0 < 1.2.0.post1.
"""

from __future__ import annotations

import glob
import os
import re

_PATTERN = re.compile(r"""
    v?(?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?:-(?P<post_n1>[0-9]+)|[-_.]?(?:post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?(?P<post_mark>))?
    (?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
""", re.VERBOSE | re.IGNORECASE)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def key(version: str) -> tuple:
    """A sort key: key(a) < key(b) exactly when PEP 440 orders a before b."""
    m = _PATTERN.fullmatch(version.strip())
    if m is None:
        raise ValueError(f"{version!r} is not a PEP 440 version")
    release = [int(x) for x in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    has_post = m["post_n1"] is not None or m["post_mark"] is not None
    post = int(m["post_n1"] or m["post_n2"] or 0) if has_post else -1
    if m["pre_l"]:
        pre = (_PRE_RANK[m["pre_l"].lower()], int(m["pre_n"] or 0))
    elif m["dev"] and not has_post:
        pre = (-1, 0)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (3, 0)
    dev = (0, int(m["dev_n"] or 0)) if m["dev"] else (1, 0)
    local = (1, tuple((1, int(p), "") if p.isdigit() else (0, 0, p.lower())
                      for p in re.split(r"[-_.]", m["local"]))) if m["local"] else (0, ())
    return int(m["epoch"] or 0), tuple(release), pre, post, dev, local


def newer(a: str, b: str | None) -> bool:
    """Whether version a comes after version b (anything is newer than no version)."""
    return b is None or key(a) > key(b)


def of_wheel(path: str) -> str:
    """The version in a wheel's file name (name-version-...-tag.whl)."""
    parts = os.path.basename(path).split("-")
    if len(parts) < 5 or not path.endswith(".whl"):
        raise ValueError(f"{path}: not a wheel file name")
    key(parts[1])
    return parts[1]


def installed(command: str) -> str | None:
    """The bingo-host version a bingo-host script runs (followed through links): the metadata
    of the environment the script belongs to; None when there is none (no script, not pip's)."""
    real = os.path.realpath(command)
    prefix = os.path.dirname(os.path.dirname(real))
    found = glob.glob(f"{glob.escape(prefix)}/lib/python3*/site-packages/bingo_host-*.dist-info/METADATA")
    if not os.path.exists(real) or len(found) != 1:
        return None
    with open(found[0], encoding="utf-8") as f:
        for line in f:
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
            if not line.strip():
                break
    return None
