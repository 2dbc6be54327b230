"""Running one lifecycle event's hook scripts the way the CodeDeploy agent's HookExecutor does.

`runuser -u USER -- SCRIPT` for `runas` (the agent's `su USER -c SCRIPT` hands the path to a
shell, which would run whatever the path's metacharacters say; runuser execs the path itself,
also for a user whose shell is nologin), in their own process group, stdin closed, stdout and
stderr read separately line by line into logs/scripts.log, the caller's working directory and
environment (plus LIFECYCLE_EVENT). A script still running at its timeout gets SIGTERM on its process group
(never SIGKILL) and the deployment fails once it exited; a script that exits while a background
process keeps its stdout (or stderr) open fails at its timeout, as under the agent.

Scripts are started with subprocess directly rather than through subp.run: the agent's behaviour
needs output streamed line by line from two pipes and its exact timeout handling.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time

from . import DeployError, appspec

log = logging.getLogger(__name__)


class ScriptLog:
    """<deployment dir>/logs/scripts.log, written like the agent's hook executor writes it."""

    def __init__(self, path: str):
        self.path = path
        self._f = None

    def write(self, message: bytes | str) -> None:
        if isinstance(message, str):
            message = message.encode()
        if not message.endswith(b"\n"):
            message += b"\n"
        if self._f is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._f = open(self.path, "ab")
        self._f.write(time.strftime("%Y-%m-%d %H:%M:%S ").encode() + message)
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class ScriptFailed(DeployError):
    def __init__(self, event: str, message: str):
        self.event = event
        super().__init__(message)


def _error_prefix(script: appspec.Script) -> str:
    prefix = f"Script at specified location: {script.location}"
    return f"{prefix} run as user {script.runas}" if script.runas else prefix


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_script(archive: str, script: appspec.Script, env: dict, script_log: ScriptLog) -> None:
    """Run one hook script the way the agent's HookExecutor#execute_script does."""
    event, location = script.event, script.location
    path = os.path.join(archive, location)
    if not os.path.exists(path):
        raise ScriptFailed(event, f"Script does not exist at specified location: {os.path.abspath(path)}")
    if not os.access(path, os.X_OK):
        log.info(f"[{event}] Script at specified location: {location} is not executable.  Trying to make "
                 "it executable.")
        try:
            os.chmod(path, os.stat(path).st_mode | 0o111)
        except OSError:
            raise ScriptFailed(event, f"Unable to set script at specified location: {location} as "
                                      "executable") from None
    # The agent's prepare_script_command (linux_util.rb) is `su USER -c SCRIPT`: no shell here.
    argv = ["runuser", "-u", script.runas, "--", path] if script.runas else [path]
    script_log.write(f"Script - {location}\n")
    log.info(f"[{event}] running {location}" + (f" as {script.runas}" if script.runas else "")
             + f" (timeout {script.timeout} s)")
    # Open3.popen3(env, cmd, pgroup: true): own process group, three pipes, no chdir.
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    start = time.monotonic()
    deadline = start + script.timeout
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **group)
    proc.stdin.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    bufs = {"stdout": b"", "stderr": b""}
    open_streams = ["stdout", "stderr"]
    reason = ""  # the script's first "error:" line, repeated in the deployment's error

    def emit(stream: str, line: bytes) -> None:
        nonlocal reason
        script_log.write(f"[{stream}]".encode() + line + b"\n")
        text = line.decode(errors="replace")
        if "error:" in text and not reason:
            reason = text.split("error:", 1)[1].strip()
        log.info(f"[{event}] {text}")

    closed = False

    def close_pipes() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        for stream in open_streams:
            if bufs[stream]:
                emit(stream, bufs[stream])
                bufs[stream] = b""
        sel.close()
        proc.stdout.close()
        proc.stderr.close()

    def timed_out() -> None:
        # The agent: Process.kill('-TERM', pid), then Open3 closes the pipes and waits for the
        # script to exit, however long that takes. No SIGKILL.
        _signal_group(proc.pid, signal.SIGTERM)
        close_pipes()
        log.info(f"[{event}] {location} timed out after {script.timeout} s: sent SIGTERM to its process "
                 "group; waiting for it to exit (the agent waits too)")
        proc.wait()
        raise ScriptFailed(event, f"Script at specified location: {location} failed to complete in "
                                  f"{script.timeout} seconds")

    try:
        while open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if proc.poll() is None:
                    timed_out()
                held = "STDOUT" if "stdout" in open_streams else "STDERR"
                close_pipes()
                log.info(f"[{event}] {location} exited {proc.returncode}, but a process it started still "
                         f"holds its {held.lower()} open; the agent waits for it until the hook's timeout "
                         "(redirect that process's output, e.g. >/dev/null 2>&1)")
                raise ScriptFailed(event, f"Script at specified location: {location} failed to close {held}")
            for key, _ in sel.select(min(remaining, 1.0)):
                stream = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams.remove(stream)
                    if bufs[stream]:
                        emit(stream, bufs[stream])
                        bufs[stream] = b""
                    continue
                *lines, bufs[stream] = (bufs[stream] + chunk).split(b"\n")
                for line in lines:
                    emit(stream, line)
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out()
    except KeyboardInterrupt:
        _signal_group(proc.pid, signal.SIGTERM)
        raise
    finally:
        close_pipes()
    rc = proc.returncode
    took = time.monotonic() - start
    if rc != 0:
        try:
            code = str(rc) if rc > 0 else f"(killed by {signal.Signals(-rc).name})"
        except ValueError:
            code = f"(killed by signal {-rc})"
        raise ScriptFailed(event, f"{_error_prefix(script)} failed with exit code {code}"
                                  + (f": {reason}" if reason else ""))
    log.info(f"[{event}] {location} succeeded in {took:.1f} s")


def run_event(event: str, spec: appspec.AppSpec, archive: str, base_env: dict, script_log: ScriptLog) -> None:
    """Run the event's scripts in the appspec's order; the first that fails raises ScriptFailed."""
    scripts = spec.hooks.get(event) or ()
    if not scripts:
        return
    script_log.write(f"LifecycleEvent - {event}\n")
    env = dict(base_env, LIFECYCLE_EVENT=event)
    for script in scripts:
        run_script(archive, script, env, script_log)
