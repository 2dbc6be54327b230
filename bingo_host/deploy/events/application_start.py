"""ApplicationStart: the switch to the new release."""

from __future__ import annotations

from ...errors import BingoHostError
from .. import DeployError, record
from ..releases import Paths, current_name, prune, read_record, update_record
from ..switch import switch_with_fallback


def run(ctx, env) -> None:
    """ApplicationStart: the switch (switch.py: the release runs on the uWSGI slot that does
    not serve, started there by AfterInstall or now; its master sends the app its first
    request in one process before it forks the workers (first_bind.py: the app's tables and
    first account exist before two workers can race to make them; a failure leaves the old
    release serving), nginx's upstream link flips once every worker answers, the old slot
    drains and stops; else `current` goes back); then prune old releases."""
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if read_record(paths.release(name)) is None:
        raise DeployError(f"release {paths.release(name)} was not built (did AfterInstall run?)")
    st = record.load()
    previous = current_name(paths)
    if previous == name:
        previous = st.get("previous") if st else None
    st["previous"] = previous
    record.save(st)
    try:
        switch_with_fallback(ctx, name, previous)
    except BingoHostError as exc:
        update_record(paths, name, failed={"at": record.now(), "event": "ApplicationStart",
                                           "reason": str(exc).splitlines()[0]})
        raise
    update_record(paths, name, activated_at=record.now(), deployed_at=record.now())
    prune(paths, ctx.cfg.app.keep_releases, {name, previous or ""})
