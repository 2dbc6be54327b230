"""What the bench scripts share: a bounded open-loop load through the test host's nginx, and a table.

    from load import Load      (bench/ is on sys.path of a script run from it)
    with Load(20, [("/", {}), ("/api/user", {"Authorization": "Bearer ..."})]) as load:
        ...                     # the load runs while this block does, plus `tail` seconds
    sent, failed, p50, p99 = load.summary()
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

MAX_LOAD_SECONDS = 900  # the load stops by itself, whatever happens


class Load:
    """`rate` requests a second, cycling through `requests` (path, headers), from a thread pool
    so a slow answer never slows the schedule; non-2xx or no answer within `timeout` fails."""

    def __init__(self, rate: float, requests: Sequence[tuple[str, dict]] = (("/", {}), ("/api/health", {})),
                 timeout: float = 5, tail: float = 2, workers: int = 64):
        self.rate, self.requests, self.timeout, self.tail = rate, list(requests), timeout, tail
        self.workers = workers
        self.results: list[tuple[bool, float]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, path: str, headers: dict) -> None:
        start = time.monotonic()
        ok = False
        try:
            req = urllib.request.Request(f"http://127.0.0.1{path}", headers=headers)
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
                ok = 200 <= resp.status < 300
        except (urllib.error.URLError, OSError):
            ok = False
        with self._lock:
            self.results.append((ok, (time.monotonic() - start) * 1000))

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            t0 = time.monotonic()
            i = 0
            while not self._stop.is_set() and time.monotonic() - t0 < MAX_LOAD_SECONDS:
                pool.submit(self._one, *self.requests[i % len(self.requests)])
                i += 1
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(self.tail)
        self._stop.set()
        self._thread.join()

    def summary(self) -> tuple[int, int, float, float]:
        """Requests sent, failed, p50 and p99 latency in ms (of the answered ones)."""
        lat = sorted(ms for ok, ms in self.results if ok)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
        return len(self.results), sum(1 for ok, _ in self.results if not ok), p(0.50), p(0.99)


def table(header: Sequence[str], rows: Sequence[Sequence], first_width: int | None = None) -> str:
    """Rows under a header: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in r]
                                         for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    if first_width:
        widths[0] = max(widths[0], first_width)
    return "\n".join(" ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
                     for r in cells)
