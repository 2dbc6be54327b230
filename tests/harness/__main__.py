"""CLI: python -m tests.harness {build-image|shell|boot-and-run|cleanup} (as root).

    python -m tests.harness build-image [--force]       build/refresh the cached image
    python -m tests.harness shell [--wheel W]           boot, interactive bash, shut down
    python -m tests.harness boot-and-run [--wheel W] CMD...
                                                        boot, (install wheel), run CMD inside,
                                                        shut down; exits with CMD's code
    python -m tests.harness cleanup                     tear down hosts left by killed runs
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

from . import image
from .host import TestHost, cleanup_stale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-image", help="build the cached Debian 12 image if needed")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    s = sub.add_parser("shell", help="boot, run an interactive shell inside, shut down")
    s.add_argument("--wheel", help="install this bingo-host wheel first")
    r = sub.add_parser("boot-and-run", help="boot, run a command inside, shut down")
    r.add_argument("--wheel", help="install this bingo-host wheel first")
    r.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("cleanup", help="tear down test hosts left behind by killed runs")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO,
                        format="[harness] %(message)s", stream=sys.stderr)

    if a.cmd == "build-image":
        t0 = time.monotonic()
        path = image.ensure_image(force=a.force)
        print(f"{path} ({time.monotonic() - t0:.1f}s)")
        return 0
    if a.cmd == "cleanup":
        for d in cleanup_stale():
            print(f"cleaned {d}")
        return 0
    if a.cmd == "boot-and-run" and not a.command:
        ap.error("boot-and-run needs a command")
    with TestHost.boot() as host:
        if a.wheel:
            host.install_wheel(a.wheel)
        if a.cmd == "shell":
            return host.interactive()
        return subprocess.call(host._nsenter() + a.command, env=host._env(None))


if __name__ == "__main__":
    sys.exit(main())
