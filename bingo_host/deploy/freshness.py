"""No going back by replay: a signed revision older than the serving one needs an explicit, one-time yes.

Whoever may create a CodeDeploy deployment could otherwise put back any revision ever signed, with
its bugs and the bingo-host wheel it carried; so a signed revision `created` before the serving
release's is refused (as old passes: CodeDeploy redeploys the last good one after a failure).
Going back on purpose takes root on the host: ALLOW_FILE (root's, 0600, written by `bingo-host
allow-older` or `deploy --allow-older`) lets the next deployment through once. Not a config
setting (it would stay on after the rollback and guard nothing), not an environment variable
(the agent passes its hooks only its own). A serving release without a signed `created` has
nothing to compare with and takes any signed revision once.
"""

from __future__ import annotations

import json
import logging
import os
import re

from .. import layout
from ..regular_file import NotRegularFile, read_regular
from ..state import write_json
from . import BundleError
from .integrity import CREATED
from .record import now
from .releases import Paths, current_name, read_record

log = logging.getLogger(__name__)

ALLOW_FILE = f"{layout.STATE_DIR}/allow-older"
SHA256 = re.compile(r"[0-9a-f]{64}")


def serving_created(paths: Paths) -> str | None:
    """The serving release's signed revision's `created`, None when there is none to compare."""
    name = current_name(paths)
    record = read_record(paths.release(name)) if name else None
    revision = (record or {}).get("revision") or {}
    created = revision.get("created") if revision.get("signed") is True else None
    return created if isinstance(created, str) and CREATED.fullmatch(created) else None


def allow(revision: str, dry_run: bool = False) -> None:
    """Let the next BeforeInstall deploy this revision (its `created` or manifest sha256) even
    though it is older than the serving one."""
    if not (CREATED.fullmatch(revision) or SHA256.fullmatch(revision)):
        raise BundleError(f"allow-older: {revision[:80]!r} is neither a revision's created time "
                          "(2026-01-31T12:00:00Z) nor its manifest sha256 (64 hex digits)")
    if not dry_run:
        write_json(ALLOW_FILE, {"revision": revision, "written_at": now()}, "root", "root", mode=0o600)


def _take_allowance() -> str | None:
    """The revision ALLOW_FILE names, removing the file; None when there is none (or it is not a
    root-only regular file: then it allows nothing)."""
    try:
        found = read_regular(ALLOW_FILE)
    except NotRegularFile:
        found = None
    if os.path.lexists(ALLOW_FILE):
        os.unlink(ALLOW_FILE)
    if found is None:
        return None
    data, st = found
    if st.st_uid != 0 or st.st_mode & 0o077:
        return None
    try:
        revision = json.loads(data).get("revision")
    except (ValueError, AttributeError):
        return None
    return revision if isinstance(revision, str) else None


def check(revision: dict, paths: Paths, *, consume: bool, allow_older: bool = False) -> None:
    """Refuse (BundleError) a signed revision created before the serving one's, unless allowed:
    by ALLOW_FILE naming it (consumed when consume, i.e. in BeforeInstall), or by allow_older,
    which writes ALLOW_FILE for it so that the BeforeInstall to come lets it through too."""
    allowed = _take_allowance() if consume else None
    if not revision.get("signed"):
        return
    serving = serving_created(paths)
    created = revision["created"]
    if serving is None or created >= serving:
        return
    if allowed is not None and allowed in (created, revision["manifest_sha256"]):
        log.info(f"freshness: revision created {created} is older than the serving one ({serving}); "
                 f"deployed because `bingo-host allow-older {allowed}` allowed it once")
        return
    if allow_older:
        allow(revision["manifest_sha256"])
        log.info(f"freshness: revision created {created} is older than the serving one ({serving}); "
                 "deployed because of --allow-older")
        return
    raise BundleError(f"the revision was created {created}, before the serving release's revision "
                      f"({serving}): refusing to go back to it (a replayed old revision?). To deploy "
                      f"it anyway run `bingo-host allow-older {revision['manifest_sha256']}` on the "
                      "host and deploy again, or `bingo-host deploy --allow-older`")
