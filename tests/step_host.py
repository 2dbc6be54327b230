"""A fresh test host that runs one converge step from this checkout, as a pytest plugin.

`vhost` (module scope: one host per module that uses it, shut down after the module) carries the
repository's bingo_host at SRC_INSIDE and a small driver; `run_step(host, "volume" | "swap", ...)`
runs that step's converge in it and returns its outcome as a dict. Only the standard library is
needed inside, as for the volume and swap steps on a real instance.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SRC_INSIDE = "/opt/bingo-src"
DRIVER = r'''
import json, os, sys, time
from types import SimpleNamespace as NS
sys.path.insert(0, "/opt/bingo-src")
from bingo_host.errors import BingoHostError
from bingo_host.converge.steps import swap, volume
from bingo_host.facts.host import is_legacy_datadir

class Ctx:
    def __init__(self, cfg, dry_run):
        self.cfg, self.dry_run, self.changes = cfg, dry_run, []
    def change(self, description, fn=None):
        self.changes.append(description)
        return None if self.dry_run or fn is None else fn()
    def fact(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)
    def remove_file(self, path):
        if not os.path.lexists(path):
            return False
        self.change(f"remove {path}", lambda: os.unlink(path))
        return True

a = json.loads(sys.argv[1])
cfg = NS(database=NS(local=a.get("local", True)), volume=NS(**{"attach_as": None, **a.get("volume", {})}),
         swap=NS(size=a.get("swap", 0)))
ctx = Ctx(cfg, a.get("dry_run", False))
step = {"volume": volume, "swap": swap}[a["step"]]
t0 = time.monotonic()
try:
    reason = step.converge(ctx)
    out = {"reason": reason, "error": None}
except BingoHostError as e:
    out = {"reason": None, "error": str(e)}
mp = getattr(cfg.volume, "mountpoint", None)
legacy = bool(mp) and os.path.ismount(mp) and is_legacy_datadir(mp)  # what host_facts reads
out.update(changes=ctx.changes, legacy_datadir=legacy, seconds=time.monotonic() - t0)
print(json.dumps(out))
'''


def install_source(host) -> None:
    """The repository's bingo_host on the test host, with a tiny driver that runs one step."""
    dest = Path(str(host.root) + SRC_INSIDE)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(REPO / "bingo_host", dest / "bingo_host",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "run_step.py").write_text(DRIVER)


def run_step(host, step: str, timeout: float = 300, **args) -> dict:
    r = host.run(["python3", f"{SRC_INSIDE}/run_step.py", json.dumps({"step": step, **args})],
                 timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def boot_when_free(host_pool, wait: float = 1200):
    """host_pool.fresh(), waiting while another session's test host holds the machine."""
    from tests.harness import HarnessError

    deadline = time.monotonic() + wait
    while True:
        try:
            return host_pool.fresh()
        except HarnessError as e:
            if "another bingo-host test host is running" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(5)


@pytest.fixture(scope="module")
def vhost(host_pool):
    """A fresh test host for this module (the harness allows one at a time)."""
    host = boot_when_free(host_pool)
    try:
        install_source(host)
        yield host
    finally:
        host.shutdown()
