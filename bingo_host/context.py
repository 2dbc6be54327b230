"""The context every command that changes the host stands on: the resolved config, the platform,
the host's facts (read again after a step changed the host), the secrets, and owed actions (a
written file's ``on_change``, kept as a marker under /var/lib/bingo-host/pending/ until the step
that owns the service pays it, so a run killed in between is healed by the next one).

Every change goes through ``ctx.change(description, fn)``: in --dry-run the description is
reported and fn is not called; inside a converge step the change is logged at DEBUG (the step's
line reports it), elsewhere at INFO. Every read of the host a step decides on goes through
``ctx.fact(fn, *args)`` (a function of facts/) and ``ctx.ensure_file``/``differs``, so that a
test can answer them from recorded data (tests/test_steps.py). converge/, deploy/, https.py and
restore/ make one with ``make_context``; it sits below them so none of them imports another for it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from . import layout, render
from .config import Config
from .facts import paths, platforms
from .facts.host import HostFacts
from .facts.platforms import Platform
from .ops import files
from .render import PASSWORD_PLACEHOLDER, ManagedFile, render_all
from .resolve import ResolvedConfig, check_app_user, host_facts, resolve

log = logging.getLogger(__name__)


@dataclass
class Context:
    cfg: ResolvedConfig
    platform: Platform
    facts: HostFacts
    dry_run: bool = False
    step: str | None = None  # the converge step running, whose line reports its changes
    changes: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # filled by the secrets step
    read_facts: Callable[[], HostFacts] | None = field(default=None, repr=False)  # see run_steps
    remove_unknown_db_accounts: bool = False  # bootstrap --remove-unknown-db-accounts
    warnings: list[str] = field(default_factory=list)  # this step's, shown after its line
    owed: set[str] = field(default_factory=set)  # pending actions set in this run (dry run too)
    app_slot: str = layout.SLOTS[0]  # whose vassal managed() renders (deploy/slots.py sets it)
    app_release: str | None = None  # the release that vassal loads (None: `current`'s)
    _rendered: list[ManagedFile] = field(default_factory=list, repr=False)
    _prefetched: dict[Callable, dict] = field(default_factory=dict, repr=False)  # see prefetch
    _rendered_for: tuple | None = field(default=None, repr=False)

    def change(self, description: str, fn: Callable[[], Any] | None = None) -> Any:
        """Record a change; carry it out unless this is a dry run."""
        self.changes.append(description)
        log.log(logging.DEBUG if self.step else logging.INFO, "%s%s",
                "would " if self.dry_run else "", description)
        if self.dry_run or fn is None:
            return None
        self._prefetched.clear()  # the host changes: what was read before may no longer hold
        return fn()

    def fact(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """What the host tells: ``fn(*args, **kwargs)``, a function of facts/ (a recorded context
        answers from its case instead)."""
        known = self._prefetched.get(fn)
        if known is not None and not kwargs and all(a in known for a in args):
            return {a: known[a] for a in args}
        return fn(*args, **kwargs)

    def prefetch(self, fn: Callable[..., dict], *keys: Any) -> None:
        """Read ``fn(*keys)`` (a fact answering per key, e.g. systemd.states) in one call, so that
        each ``ctx.fact(fn, key)`` after it is answered from it until the next change: a
        converged run then asks systemctl once, not once a step (~5 ms each)."""
        self._prefetched[fn] = fn(*keys)

    def file_change(self, mf: ManagedFile) -> files.FileChange | None:
        """What writing a managed file would change (None: it is as rendered)."""
        return files.plan(mf.path, mf.content, mf.mode, mf.owner, mf.group, mf.secret)

    def warn(self, text: str) -> None:
        """Something the operator should look at that this run does not change (the engine
        logs it after the step's line)."""
        self.warnings.append(text)

    def managed_files(self) -> list[ManagedFile]:
        key = (self.facts, self.secrets.get("app_password", PASSWORD_PLACEHOLDER),
               self.secrets.get("secret_key", PASSWORD_PLACEHOLDER),
               self.secrets.get("smtp_password", PASSWORD_PLACEHOLDER), self.app_slot, self.app_release)
        if self._rendered_for != key:
            self._rendered = render_all(self.cfg, self.platform, key[0], db_password=key[1],
                                        secret_key=key[2], smtp_password=key[3], app_slot=key[4],
                                        app_release=key[5])
            self._rendered_for = key
        return self._rendered

    def managed(self, template: str) -> ManagedFile | None:
        return next((f for f in self.managed_files() if f.template == template), None)

    def differs(self, mf: ManagedFile) -> bool:
        return self.file_change(mf) is not None

    def ensure_file(self, mf: ManagedFile) -> bool:
        """Write a managed file if its content, mode or owner differ; True if it changed.
        The file's on_change (e.g. "reload nginx") is owed from before the write until the
        step that owns the service carries it out (see pending), even across a SIGKILL."""
        change = self.file_change(mf)
        if change is None:
            return False
        if mf.on_change:
            self.set_pending(mf.on_change)
        self.change(change.describe(),
                    lambda: files.write_atomic(mf.path, mf.content, mf.mode, mf.owner, mf.group))
        if self.dry_run and change.diff:
            log.info("%s", change.diff.rstrip("\n"))
        return True

    def pending(self, action: str) -> bool:
        """True if this run owes `action` (e.g. reload), or an earlier run changed a file but died
        before it could carry it out."""
        return action in self.owed or self.fact(paths.exists, _pending_marker(action))

    def set_pending(self, action: str) -> None:
        """Remember that `action` is owed, before the change that needs it (survives SIGKILL)."""
        self.owed.add(action)
        if not self.dry_run:
            os.makedirs(os.path.dirname(_pending_marker(action)), exist_ok=True)
            open(_pending_marker(action), "w").close()

    def done(self, action: str) -> None:
        self.owed.discard(action)
        if not self.dry_run and os.path.exists(_pending_marker(action)):
            os.unlink(_pending_marker(action))

    def remove_file(self, path: str) -> bool:
        if not self.fact(paths.lexists, path):
            return False
        self.change(f"remove {path}", lambda: os.unlink(path))
        return True


def _pending_marker(action: str) -> str:
    return os.path.join(layout.STATE_DIR, "pending", action.replace(" ", "-"))


def make_context(cfg: Config, dry_run: bool = False, **facts_wanted) -> Context:
    """The one way to a Context: this host's facts (``facts_wanted`` overriding some, e.g. the
    TLS domain enable-https is about to serve), the config with every 'auto' resolved; an app
    user that could become root is refused here (ConfigError)."""
    platform = platforms.get(cfg.platform)
    check_app_user(cfg, platform)  # before anything changes: the app never runs as root's equal
    if not dry_run:
        render.use_bytecode_cache(layout.JINJA_CACHE)

    def read_facts() -> HostFacts:
        return replace(host_facts(cfg), **facts_wanted)

    facts = read_facts()
    return Context(resolve(cfg, platform, facts), platform, facts, dry_run=dry_run,
                   read_facts=read_facts)

