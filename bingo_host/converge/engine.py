"""The convergence engine: steps that read the host first and change only what is missing.

Each step module exposes ``NAME`` and ``converge(ctx)``. A step reads the host's state with
plain reads and probes, and routes every change through ``ctx.change(description, fn)``: in
--dry-run the description is reported and fn is not called, so dry-run and idempotence come
from the same code. ``converge`` returns why nothing was needed (shown when unchanged).

Steps share nothing but the host itself and what the context carries: the resolved config, the
host's facts (read again after a step changed the host), the secrets, and owed actions (a
written file's ``on_change``, kept as a marker under /var/lib/bingo-host/pending/ until the step
that owns the service pays it, so a run killed in between is healed by the next one).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import layout, render
from ..ops import files
from ..config import Config
from ..errors import BingoHostError
from ..facts.platforms import Platform
from ..facts.host import HostFacts
from ..render import PASSWORD_PLACEHOLDER, ManagedFile, render_all

log = logging.getLogger("bingo_host")


@dataclass
class Context:
    cfg: Config  # resolved: no 'auto' left
    platform: Platform
    facts: HostFacts
    dry_run: bool = False
    echo: Callable[[str], None] = print
    changes: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # filled by the secrets step
    read_facts: Callable[[], HostFacts] | None = field(default=None, repr=False)  # see run_steps
    remove_unknown_db_accounts: bool = False  # bootstrap --remove-unknown-db-accounts
    warnings: list[str] = field(default_factory=list)  # this step's, shown after its line
    _rendered: list[ManagedFile] = field(default_factory=list, repr=False)
    _rendered_for: tuple | None = field(default=None, repr=False)

    def change(self, description: str, fn: Callable[[], Any] | None = None) -> Any:
        """Record a change; carry it out unless this is a dry run."""
        self.changes.append(description)
        log.info("%s%s", "would " if self.dry_run else "", description)
        if self.dry_run or fn is None:
            return None
        return fn()

    def warn(self, text: str) -> None:
        """Something the operator should look at that this run does not change."""
        self.warnings.append(text)
        log.info("warning: %s", text)  # the journal's copy; the terminal gets it from run_steps

    def managed_files(self) -> list[ManagedFile]:
        key = (self.facts, self.secrets.get("app_password", PASSWORD_PLACEHOLDER),
               self.secrets.get("secret_key", PASSWORD_PLACEHOLDER),
               self.secrets.get("smtp_password", PASSWORD_PLACEHOLDER))
        if self._rendered_for != key:
            self._rendered = render_all(self.cfg, self.platform, key[0], db_password=key[1],
                                        secret_key=key[2], smtp_password=key[3])
            self._rendered_for = key
        return self._rendered

    def managed(self, template: str) -> ManagedFile | None:
        return next((f for f in self.managed_files() if f.template == template), None)

    def differs(self, mf: ManagedFile) -> bool:
        return files.plan(mf.path, mf.content, mf.mode, mf.owner, mf.group) is not None

    def ensure_file(self, mf: ManagedFile) -> bool:
        """Write a managed file if its content, mode or owner differ; True if it changed.
        The file's on_change (e.g. "reload nginx") is owed from before the write until the
        step that owns the service carries it out (see pending), even across a SIGKILL."""
        change = files.plan(mf.path, mf.content, mf.mode, mf.owner, mf.group, mf.secret)
        if change is None:
            return False
        if mf.on_change:
            self.set_pending(mf.on_change)
        self.change(change.describe(),
                    lambda: files.write_atomic(mf.path, mf.content, mf.mode, mf.owner, mf.group))
        if self.dry_run and change.diff:
            self.echo(change.diff.rstrip("\n"))
        return True

    def pending(self, action: str) -> bool:
        """True if an earlier run changed a file but died before it could `action` (e.g. reload)."""
        return os.path.exists(_pending_marker(action))

    def set_pending(self, action: str) -> None:
        """Remember that `action` is owed, before the change that needs it (survives SIGKILL)."""
        if not self.dry_run:
            os.makedirs(os.path.dirname(_pending_marker(action)), exist_ok=True)
            open(_pending_marker(action), "w").close()

    def done(self, action: str) -> None:
        if not self.dry_run and os.path.exists(_pending_marker(action)):
            os.unlink(_pending_marker(action))

    def remove_file(self, path: str) -> bool:
        if not os.path.lexists(path):
            return False
        self.change(f"remove {path}", lambda: os.unlink(path))
        return True


def _pending_marker(action: str) -> str:
    return os.path.join(layout.STATE_DIR, "pending", action.replace(" ", "-"))


@dataclass
class StepResult:
    name: str
    status: str  # changed | unchanged | failed
    detail: str
    seconds: float


def run_steps(ctx: Context, steps) -> list[StepResult]:
    results = []
    for step in steps:
        ctx.changes, ctx.warnings = [], []
        start = time.monotonic()
        try:
            reason = step.converge(ctx)
        except Exception as exc:  # an unforeseen failure still names its step and ends the run
            detail = str(exc) if isinstance(exc, BingoHostError) else f"{type(exc).__name__}: {exc}"
            results.append(StepResult(step.NAME, "failed", detail, time.monotonic() - start))
            log.error("%s failed: %s", step.NAME, detail, exc_info=not isinstance(exc, BingoHostError))
            ctx.echo(_line(results[-1]))
            break
        if ctx.changes and not ctx.dry_run and ctx.read_facts:
            ctx.facts = ctx.read_facts()  # e.g. a volume just mounted: where is the datadir?
        status = "changed" if ctx.changes else "unchanged"
        detail = "; ".join(ctx.changes) if ctx.changes else (reason or "as wanted")
        results.append(StepResult(step.NAME, status, detail, time.monotonic() - start))
        ctx.echo(_line(results[-1], dry_run=ctx.dry_run))
        for text in ctx.warnings:
            ctx.echo(f"{step.NAME:<10} {'warning':<12} {text}")
    return results


def _line(r: StepResult, dry_run: bool = False) -> str:
    status = {"changed": "would change" if dry_run else "changed"}.get(r.status, r.status)
    return f"{r.name:<10} {status:<12} {r.detail}"


def make_context(cfg: Config, dry_run: bool = False, echo: Callable[[str], None] = print,
                 **facts_wanted) -> Context:
    """The one way to a Context: this host's facts (``facts_wanted`` overriding some, e.g. the
    TLS domain enable-https is about to serve), the config with every 'auto' resolved; an app
    user that could become root is refused here (ConfigError)."""
    from dataclasses import replace

    from ..facts import platforms
    from ..resolve import check_app_user, host_facts, resolve

    platform = platforms.get(cfg.platform)
    check_app_user(cfg, platform)  # before anything changes: the app never runs as root's equal
    if not dry_run:
        render.use_bytecode_cache(layout.JINJA_CACHE)

    def read_facts() -> HostFacts:
        return replace(host_facts(cfg), **facts_wanted)

    facts = read_facts()
    return Context(resolve(cfg, platform, facts), platform, facts, dry_run=dry_run, echo=echo,
                   read_facts=read_facts)


def log_to_journal() -> None:
    """Send bingo-host's log to the journal (through /dev/log) as well as the terminal."""
    if os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.ident = "bingo-host: "
        handler.setLevel(logging.INFO)
        log.addHandler(handler)
