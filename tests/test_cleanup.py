"""ops.cleanup: registered cleanups run last-in-first-out on an exception or SIGTERM/SIGHUP,
never on success, and leave the signal handlers as they found them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bingo_host.ops.cleanup import Cleanup, Stopped


def test_cleanups_run_last_in_first_out_when_the_body_raises():
    ran = []
    with pytest.raises(ValueError):
        with Cleanup() as undo:
            undo.register(ran.append, "first")
            undo.register(ran.append, "second")
            raise ValueError("boom")
    assert ran == ["second", "first"]


def test_nothing_runs_on_success():
    ran = []
    with Cleanup() as undo:
        undo.register(ran.append, "x")
    assert ran == []


def test_a_cancelled_cleanup_does_not_run():
    ran = []
    with pytest.raises(RuntimeError):
        with Cleanup() as undo:
            cancel = undo.register(ran.append, "kept")
            undo.register(ran.append, "other")
            cancel()
            raise RuntimeError
    assert ran == ["other"]


def test_a_failing_cleanup_is_logged_and_the_others_still_run(caplog):
    ran = []

    def broken():
        raise OSError("disk gone")
    with pytest.raises(KeyError):
        with Cleanup() as undo:
            undo.register(ran.append, "outer")
            undo.register(broken)
            raise KeyError("k")
    assert ran == ["outer"]
    assert any("broken" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_in_the_body_raises_stopped_after_the_cleanups(signum):
    ran = []
    before = signal.getsignal(signum)
    with pytest.raises(Stopped) as stopped:
        with Cleanup() as undo:
            undo.register(ran.append, "undone")
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert stopped.value.signum == signum
    assert ran == ["undone"]
    assert signal.getsignal(signum) is before


def test_nested_cleanups_all_run_innermost_first():
    ran = []
    with pytest.raises(Stopped):
        with Cleanup() as outer:
            outer.register(ran.append, "outer")
            with Cleanup() as inner:
                inner.register(ran.append, "inner")
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
    assert ran == ["inner", "outer"]


def test_a_signal_during_the_cleanups_waits_for_them_and_is_raised_after():
    ran = []

    def slow():
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while cleaning up
        ran.append("slow finished")
    with pytest.raises(Stopped) as stopped:
        with Cleanup() as undo:
            undo.register(ran.append, "first")
            undo.register(slow)
            raise ValueError("boom")
    assert ran == ["slow finished", "first"]
    assert isinstance(stopped.value.__cause__, ValueError)


def test_outside_the_main_thread_no_handler_is_installed():
    seen = []

    def body():
        with Cleanup():
            seen.append(signal.getsignal(signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [before]


def test_a_process_sent_sigterm_unwinds(tmp_path):
    """A real process: SIGTERM from outside runs the cleanup before the process ends."""
    marker = tmp_path / "cleaned"
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import sys, time
        from bingo_host.ops.cleanup import Cleanup, Stopped
        try:
            with Cleanup() as undo:
                undo.register(open({str(marker)!r}, "w").close)
                open({str(ready)!r}, "w").close()
                time.sleep(30)
        except Stopped as exc:
            sys.exit(128 + exc.signum)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)))
    for _ in range(200):
        if ready.exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert marker.exists()
