"""`bingo-host hook` unwinding: a hook that fails, or that the agent stops with SIGTERM (its
timeout), leaves the deployment record failed with the reason, removes the release it half
built, and schedules the agent's restart. The SIGTERM case runs a real hook process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from bingo_host.deploy import DeployError, hooks, record, release_build
from bingo_host.deploy.events import after_install

DID = "d-UNWIND001"
REPO = str(Path(__file__).resolve().parent.parent)


def _started(tmp_path) -> Path:
    """An app root whose staging holds an installed revision, and a record of DID after
    BeforeInstall; the app root."""
    root = tmp_path / "app"
    (root / "staging").mkdir(parents=True)
    (root / "releases").mkdir()
    (root / "staging" / "application.py").write_text("app = None\n")
    (root / "staging" / "requirements.txt").write_text("idna\n")
    (tmp_path / "deploy.json").write_text(json.dumps({
        "schema": 1, "deployment_id": DID, "status": "in-progress", "event": "BeforeInstall",
        "event_status": "ok", "pid": None, "pid_start": None, "driver_pid": None,
        "driver_start": None, "revision": None, "error": None, "finished_at": None}))
    return root


def _context(root: Path):
    app = types.SimpleNamespace(root=str(root), user="root", requirement_overrides=())
    return types.SimpleNamespace(cfg=types.SimpleNamespace(app=app),
                                 platform=types.SimpleNamespace(python=sys.executable),
                                 facts=types.SimpleNamespace(mem_bytes=1 << 30))


def _saved(tmp_path) -> dict:
    return json.loads((tmp_path / "deploy.json").read_text())


def test_a_failing_hook_marks_its_record_failed_and_removes_the_half_built_release(tmp_path,
                                                                                    monkeypatch):
    root = _started(tmp_path)
    scheduled = []
    monkeypatch.setattr(record, "STATE_FILE", str(tmp_path / "deploy.json"))
    monkeypatch.setattr(hooks, "make_context", lambda cfg: _context(root))
    monkeypatch.setattr(hooks.agent_restart, "schedule", lambda: scheduled.append(True))
    monkeypatch.setattr(after_install, "build_scope", lambda mem_bytes: [])

    def pip_fails(venvs, cache, release_dir, python, scope=(), overrides=()):
        assert os.path.isdir(release_dir)  # the half-built release exists while it builds
        raise DeployError("pip install failed: no such package")

    monkeypatch.setattr(release_build, "ensure_venv", pip_fails)
    with pytest.raises(DeployError, match="pip install failed"):
        hooks.run_hook(None, "AfterInstall", {"DEPLOYMENT_ID": DID})
    saved = _saved(tmp_path)
    assert (saved["status"], saved["event"], saved["event_status"]) == ("failed", "AfterInstall", "failed")
    assert saved["error"] == "pip install failed: no such package" and saved["finished_at"]
    assert sorted(os.listdir(root / "releases")) == []  # neither .d-….partial nor d-…
    assert scheduled == [True]


CHILD = """\
import sys, time, types
from bingo_host.deploy import hooks, record, release_build
from bingo_host.deploy.events import after_install
from bingo_host.ops.cleanup import Stopped

record.STATE_FILE = {state!r}
app = types.SimpleNamespace(root={root!r}, user="root", requirement_overrides=())
ctx = types.SimpleNamespace(cfg=types.SimpleNamespace(app=app), facts=types.SimpleNamespace(mem_bytes=1 << 30),
                            platform=types.SimpleNamespace(python=sys.executable))
hooks.make_context = lambda cfg: ctx
hooks.agent_restart.schedule = lambda: open({scheduled!r}, "w").close()
after_install.build_scope = lambda mem_bytes: []


def slow_pip(venvs, cache, release_dir, python, scope=(), overrides=()):
    open({building!r}, "w").write(release_dir)
    time.sleep(60)


release_build.ensure_venv = slow_pip
try:
    hooks.run_hook(None, "AfterInstall", {{"DEPLOYMENT_ID": {did!r}, "LIFECYCLE_EVENT": "AfterInstall"}})
except Stopped as exc:  # what the CLI does with it
    sys.exit(128 + exc.signum)
"""


def test_sigterm_mid_event_unwinds_the_hook(tmp_path):
    root = _started(tmp_path)
    building, scheduled = tmp_path / "building", tmp_path / "scheduled"
    child = CHILD.format(state=str(tmp_path / "deploy.json"), root=str(root), did=DID,
                         building=str(building), scheduled=str(scheduled))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(child)], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (building.exists() and building.read_text()):  # created, then written: wait for both
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        partial = Path(building.read_text())
        assert partial.is_dir() and partial.name == f".{DID}.partial"
        assert _saved(tmp_path)["event_status"] == "running"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    saved = _saved(tmp_path)
    assert (saved["status"], saved["event"], saved["event_status"]) == ("failed", "AfterInstall", "failed")
    assert saved["error"] == "stopped by SIGTERM"
    assert not partial.exists() and os.listdir(root / "releases") == []
    assert scheduled.exists()  # no later hook runs: the agent is restarted once idle
