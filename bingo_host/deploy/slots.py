"""The app's two release slots (layout.SLOTS): uWSGI vassals that take turns, so a release switch
costs one import of the app whatever the worker count.

A slot's master imports the release `current` points at once and forks its workers (they share
its pages). nginx sends requests to layout.app_socket, a symlink to the serving slot's socket:
pointing it at another slot is one atomic rename (nginx resolves the path at each connect, so
it needs no reload), and a request already accepted by the old slot finishes there. The old
slot is stopped only once it has drained (nothing in its listen queue, no worker busy), by a
graceful shutdown through its master FIFO after its vassal file is removed (the emperor would
respawn a vassal whose file is still there). The emperor's own stop of a removed vassal kills
it at once; so bingo-host never removes a vassal that may still hold a request.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from .. import layout, subp
from ..facts import uwsgi
from ..ops import files
from . import DeployError, first_bind

log = logging.getLogger(__name__)

POLL = 0.02  # s between looks at a starting slot (each look costs the importing master CPU)
QUICK_POLL = 0.01  # s between looks at a draining or stopping slot: the switch waits on these
DRAIN_TIMEOUT = 65.0  # the vassal's harakiri (60 s) bounds any request it still holds
STOP_TIMEOUT = 20.0  # its reload-mercy (10 s) bounds a graceful shutdown
LEGACY_DRAIN = 1.0  # s the vassal from before slots (no stats socket) gets to finish its requests


def other(slot: str | None) -> str:
    return layout.SLOTS[1] if slot == layout.SLOTS[0] else layout.SLOTS[0]


def serving(app: str) -> str | None:
    """The slot nginx's upstream points at; None before the first switch with slots."""
    return uwsgi.serving_slot(layout.app_socket(app))


def vassals(app: str) -> list[str]:
    """The app's vassal files there are: the slots', and the one from before slots."""
    return [path for path in (*(layout.slot_vassal_file(app, s) for s in layout.SLOTS),
                              layout.vassal_file(app)) if os.path.lexists(path)]


def journal_tail(lines: int = 15) -> str:
    """The app's last uWSGI log lines, for an error that says why a slot did not start."""
    out = subp.run(["journalctl", "-u", layout.UWSGI_SERVICE, "-n", "60", "--no-pager", "-o", "cat"],
                   rcs=range(256), timeout=30).stdout.splitlines()
    return "\n".join(out[-lines:])


def ready_workers(st: dict | None) -> int:
    """How many of a master's workers (its stats) are running and accepting requests."""
    return sum(1 for w in (st or {}).get("workers", ()) if w.get("pid") and w.get("accepting"))


def wait_ready(ctx, slot: str, timeout: float) -> float:
    """Until every one of the slot's app.processes workers accepts requests and the app answers
    its health path through the slot's own socket (any HTTP status: the app is loaded and
    answers; whether it reaches its database is ValidateService's question, through nginx).
    Seconds it took; DeployError at once when the master's first bind failed (first_bind.py),
    with uWSGI's last lines after `timeout`."""
    app, processes = ctx.cfg.app.name, ctx.cfg.app.processes
    stats_path, sock = layout.slot_stats(app, slot), layout.slot_socket(app, slot)
    start = time.monotonic()
    ready, master = 0, None
    while time.monotonic() - start < timeout:
        first_bind.check(ctx, slot)
        st = uwsgi.stats(stats_path)
        if st is not None and master is None:
            master = time.monotonic() - start
        ready = ready_workers(st)
        if ready >= processes and uwsgi.ask(sock, ctx.cfg.app.health_path) is not None:
            took = time.monotonic() - start
            log.info(f"uwsgi: slot {slot}'s master answered in {master:.2f} s, every worker in {took:.2f} s")
            return took
        time.sleep(POLL)
    raise DeployError(f"uWSGI slot {slot} did not start within {timeout:.0f} s ({ready} of {processes} "
                      f"workers accepting requests)\n{journal_tail()}")


def wake_emperor() -> None:
    """Make the emperor scan its vassals directory now rather than at its next scan (up to a
    second away): it wakes from its wait on SIGWINCH (emperor.c's emperor_wakeup) and scans.
    A signal that comes while it is already scanning only leaves the new vassal to the next."""
    subp.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGWINCH", f"{layout.UWSGI_SERVICE}.service"],
             rcs=range(256), timeout=30)


def point(app: str, slot: str) -> None:
    """nginx's upstream -> the slot's socket (atomic: a connect sees the old slot or the new)."""
    files.symlink(layout.app_socket(app), os.path.basename(layout.slot_socket(app, slot)))
    log.info(f"switch: {layout.app_socket(app)} -> slot {slot}")


def drain(app: str, slot: str | None) -> None:
    """Until the slot (no longer pointed at) holds no request: its listen queue empty and no
    worker busy, twice in a row. The vassal from before slots has no stats: a fixed wait."""
    if slot is None:
        time.sleep(LEGACY_DRAIN)
        return
    deadline, idle = time.monotonic() + DRAIN_TIMEOUT, 0
    while time.monotonic() < deadline and idle < 2:
        st = uwsgi.stats(layout.slot_stats(app, slot))
        if st is None:
            return  # nothing answers: nothing runs there to drain
        busy = any(w.get("status") == "busy" for w in st.get("workers", ()))
        idle = 0 if busy or st.get("listen_queue") else idle + 1
        time.sleep(QUICK_POLL)


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, exited and not yet reaped by the emperor, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def stop(ctx, vassal: str) -> None:
    """Remove a vassal file and wait until its master and workers are gone: asked to shut down
    gracefully through its master FIFO at once (the emperor would stop it only at its next scan,
    within a second, and brutally). What is still there after STOP_TIMEOUT is killed: callers
    stop a slot nginx no longer points at, drained or never served, so it holds no request, and
    a graceful stop can hang for good when it reaches workers still in their warm-up (a slot the
    emperor had just respawned, e.g. after its own restart in the same bootstrap)."""
    app = ctx.cfg.app.name
    pids = uwsgi.vassal_pids(vassal)
    slot = next((s for s in layout.SLOTS if vassal == layout.slot_vassal_file(app, s)), None)
    fifo = layout.slot_fifo(app, slot) if slot else layout.app_master_fifo(app)
    os.unlink(vassal)
    files.write_fifo(fifo, b"q")
    pids = _wait_gone(pids, STOP_TIMEOUT)
    if pids:
        log.warning(f"uwsgi: {os.path.basename(vassal)} did not stop within {STOP_TIMEOUT:.0f} s of a "
                    f"graceful stop: killing its {len(pids)} processes (it holds no request)")
        _signal_all(pids, signal.SIGKILL)
        pids = _wait_gone(pids, STOP_TIMEOUT)
    if pids:
        raise DeployError(f"uWSGI vassal {vassal} still runs {len(pids)} processes "
                          f"{STOP_TIMEOUT:.0f} s after they were killed\n{journal_tail()}")
    log.info(f"uwsgi: stopped {os.path.basename(vassal)}")


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Those of pids still alive after waiting up to timeout for all to be gone."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if alive(pid)}
        if pids:
            time.sleep(QUICK_POLL)
    return pids


def _signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_idle(ctx) -> None:
    """Drain and stop the slot nginx does not point at, if it runs: left by a deployment that
    ended after AfterInstall started it (switch.prestart), or by an interrupted switch. Before a
    deployment's build, which wants its memory."""
    app = ctx.cfg.app.name
    slot = serving(app)
    idle = layout.slot_vassal_file(app, other(slot))
    if slot is not None and os.path.lexists(idle):
        drain(app, other(slot))
        stop(ctx, idle)


def kill(ctx, vassal: str) -> None:
    """Remove the vassal file of a slot nginx never pointed at (so it holds no user's request)
    and SIGKILL its processes until none is left: one that failed while loading may still be
    forking its workers or running a worker's warm-up, where a graceful stop can hang (a worker's
    exit would run Python's exit handlers inside the interrupted warm-up)."""
    os.unlink(vassal)
    deadline = time.monotonic() + STOP_TIMEOUT
    while (pids := uwsgi.vassal_pids(vassal)) and time.monotonic() < deadline:
        _signal_all(pids, signal.SIGKILL)
        time.sleep(POLL)
    if pids:
        raise DeployError(f"uWSGI vassal {vassal} still runs {len(pids)} processes "
                          f"{STOP_TIMEOUT:.0f} s after it was killed\n{journal_tail()}")
    log.info(f"uwsgi: killed {os.path.basename(vassal)} (it never served)")
