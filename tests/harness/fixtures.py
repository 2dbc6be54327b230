"""pytest plugin: ``pytest_plugins = ["tests.harness.fixtures"]`` (in a test module or the
top-level conftest.py), or ``pytest -p tests.harness.fixtures``.

* ``testhost`` (session): one booted :class:`TestHost` for the whole session, always shut down.
  Skips only when not root; any other problem fails loudly.
* ``loop_volume`` (function): factory ``loop_volume(size_mb=256) -> LoopVolume``; every
  volume it made is unmounted inside and detached at the end of the test, even on failure.
"""

from __future__ import annotations

import os

import pytest

from .host import LoopVolume, TestHost


@pytest.fixture(scope="session")
def testhost():
    if os.geteuid() != 0:
        pytest.skip("the bingo-host test host needs root")
    host = TestHost.boot()
    try:
        yield host
    finally:
        host.shutdown()


@pytest.fixture
def loop_volume(testhost):
    made: list[LoopVolume] = []

    def factory(size_mb: int = 256) -> LoopVolume:
        vol = testhost.attach_volume(size_mb=size_mb)
        made.append(vol)
        return vol

    yield factory
    errors = []
    for vol in made:
        try:
            vol.detach()
        except Exception as e:  # keep detaching the others
            errors.append(f"{vol.device}: {e}")
    if errors:
        raise RuntimeError("detaching loop volumes failed: " + "; ".join(errors))
