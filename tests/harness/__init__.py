"""bingo-host test harness: a throwaway Debian 12 host with systemd as PID 1.

    from tests.harness import TestHost, LoopVolume
    host = TestHost.boot()          # ~5 s with a warm image cache (first build ~1-2 min)
    host.run(["systemctl", "is-active", "nginx"], check=False)
    vol = host.attach_volume(size_mb=256)
    ...
    host.shutdown()

pytest: ``pytest_plugins = ["tests.harness.fixtures"]`` gives the ``testhost`` (session)
and ``loop_volume`` (factory) fixtures. CLI: ``python -m tests.harness --help``.
Needs root. See tests/harness/README.md.
"""

from .host import (CommandFailed, HarnessError, HostPopen, LoopVolume, TestHost,
                   cleanup_stale)
from .image import ensure_image

__all__ = ["TestHost", "LoopVolume", "HostPopen", "HarnessError", "CommandFailed",
           "ensure_image", "cleanup_stale"]
