"""A pytest-testinfra backend that runs commands inside a :class:`TestHost` via nsenter."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from testinfra.backend import base

if TYPE_CHECKING:
    from .host import TestHost


class NsenterBackend(base.BaseBackend):
    NAME = "nsenter"

    def __init__(self, testhost: "TestHost", *args: Any, **kwargs: Any):
        self.testhost = testhost
        super().__init__(f"testhost-{testhost.pid}", *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        p = subprocess.run(self.testhost._nsenter() + ["/bin/sh", "-c", cmd],
                           env=self.testhost._env(None), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=600)
        return self.result(p.returncode, self.encode(cmd), p.stdout, p.stderr)
