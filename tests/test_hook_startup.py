"""A lifecycle hook's start-up loads what its event uses and nothing else: `bingo-host hook EVENT`
runs four times a deployment, and every module it imports is paid each time (issue 24: <= 0.1 s;
bench/cli times it in a test host). Each case runs the real command line in a fresh interpreter
up to where the event's work would begin (no DEPLOYMENT_ID: the hook stops there, exit 2) and
lists what it imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bingo_host.deploy.events import EVENTS

REPO = Path(__file__).resolve().parent.parent

# Heavy, or another command's: no hook's start-up may load one (a module or anything under it).
NEVER = ("boto3", "botocore", "jinja2", "psutil", "urllib.request", "http.client", "ssl",
         "bingo_host.cli.host", "bingo_host.cli.data", "bingo_host.cli.deploy", "bingo_host.cli.config",
         "bingo_host.cli.status",
         "bingo_host.deploy.lifecycle", "bingo_host.deploy.wheel", "bingo_host.deploy.bundle",
         "bingo_host.deploy.rollback", "bingo_host.converge", "bingo_host.status")
# What one event stands on, which the others must not load.
ONLY_FOR = {"BeforeInstall": ("botocore",), "ValidateService": ("http.client", "ssl")}

RUN_HOOK = """
import json, sys
from bingo_host.cli import main
try:
    main(["--config", sys.argv[1], "hook", sys.argv[2]])
except SystemExit as exc:
    print(json.dumps({"exit": exc.code, "modules": sorted(sys.modules)}))
"""


def _under(name: str, parents) -> bool:
    return any(name == p or name.startswith(p + ".") for p in parents)


@pytest.mark.parametrize("event", [e for e in EVENTS if e != "ApplicationStop"])
def test_a_hook_imports_its_own_event_and_nothing_heavy(tmp_path, event):
    config = tmp_path / "config.yaml"
    config.write_text("platform: debian12\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}  # no DEPLOYMENT_ID
    result = subprocess.run([sys.executable, "-c", RUN_HOOK, str(config), event], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=120)
    assert "DEPLOYMENT_ID is not set" in result.stderr, result.stderr
    run = json.loads(result.stdout)
    assert run["exit"] == 2
    loaded = run["modules"]
    assert "bingo_host.config_file" in loaded  # it went through the config, as a real hook does
    events = {m.rsplit(".", 1)[1] for m in loaded if m.startswith("bingo_host.deploy.events.")}
    assert events == {EVENTS[event]}
    never = [p for p in NEVER if p not in ONLY_FOR.get(event, ())]
    assert [m for m in loaded if _under(m, never)] == []
