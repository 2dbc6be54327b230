"""The convergence engine: steps that read the host first and change only what is missing.

Each step module exposes ``NAME`` and ``converge(ctx)`` (ctx: a context.Context), and names the
systemd units it reads in ``UNITS`` (read for all steps in one `systemctl show`). A step reads
the host through ``ctx.fact`` and ``ctx.ensure_file`` (so tests/test_steps.py runs it from
recorded facts) and routes every change through ``ctx.change(description, fn)``: in --dry-run
the description is reported and fn is not called, so dry-run and idempotence come from the same
code. ``converge`` returns why nothing was needed
(shown when unchanged). Steps share nothing but the host itself and what the context carries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..context import Context
from ..errors import BingoHostError
from ..facts import systemd

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    name: str
    status: str  # changed | unchanged | failed
    detail: str
    seconds: float


def run_steps(ctx: Context, steps) -> list[StepResult]:
    """Each step's line (its changes, or why none was needed) is logged once it is done; a
    failure ends the run with the failed step's line (the traceback of an unforeseen one at
    DEBUG, so --verbose shows it)."""
    results = []
    units = dict.fromkeys(u for step in steps for u in getattr(step, "UNITS", ()))
    if units:
        ctx.prefetch(systemd.states, *units)
    for step in steps:
        ctx.changes, ctx.warnings, ctx.step = [], [], step.NAME
        start = time.monotonic()
        try:
            reason = step.converge(ctx)
        except Exception as exc:  # an unforeseen failure still names its step and ends the run
            detail = str(exc) if isinstance(exc, BingoHostError) else f"{type(exc).__name__}: {exc}"
            results.append(StepResult(step.NAME, "failed", detail, time.monotonic() - start))
            report(results[-1])
            if not isinstance(exc, BingoHostError):
                log.debug("%s failed", step.NAME, exc_info=True)
            break
        finally:
            ctx.step = None
        if ctx.changes and not ctx.dry_run and ctx.read_facts:
            ctx.facts = ctx.read_facts()  # e.g. a volume just mounted: where is the datadir?
        status = "changed" if ctx.changes else "unchanged"
        detail = "; ".join(ctx.changes) if ctx.changes else (reason or "as wanted")
        results.append(StepResult(step.NAME, status, detail, time.monotonic() - start))
        report(results[-1], dry_run=ctx.dry_run)
        for text in ctx.warnings:
            log.info("%s", f"{step.NAME:<10} {'warning':<12} {text}", extra=_journal(step.NAME))
    return results


def report(r: StepResult, dry_run: bool = False) -> None:
    """A step's line, to the log and the journal (journalctl -t bingo-host STEP=mariadb)."""
    log.info("%s", _line(r, dry_run=dry_run), extra=_journal(r.name))


def _journal(step: str) -> dict:
    return {"journal": {"STEP": step}}


def _line(r: StepResult, dry_run: bool = False) -> str:
    status = {"changed": "would change" if dry_run else "changed"}.get(r.status, r.status)
    return f"{r.name:<10} {status:<12} {r.detail}"
