"""What each CodeDeploy lifecycle event does on this host: one module per event, its `run(ctx,
env)` (and that function's docstring the one description of the event). hooks.py runs them
(`bingo-host hook EVENT`) under the host lock, keeping the deployment record (record.py). They
find the unpacked revision where agent.py says, whether the CodeDeploy agent or `bingo-host
deploy` runs them.

A hook imports its own event's module only: what one event stands on (BeforeInstall's signature
check with botocore, ValidateService's HTTP client with ssl) would cost the other hooks' start-up
6 to 11 ms each (measured: `python -X importtime`, and bench/cli in a test host).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Each event (in the order CodeDeploy runs them): its module in this package.
EVENTS = {
    "ApplicationStop": "application_stop",
    "BeforeInstall": "before_install",
    "AfterInstall": "after_install",
    "ApplicationStart": "application_start",
    "ValidateService": "validate_service",
}


def load(event: str) -> ModuleType:
    """The module of `event` (a key of EVENTS), imported now."""
    return importlib.import_module(f"{__name__}.{EVENTS[event]}")
