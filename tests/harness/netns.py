"""Network namespaces a test makes for its test hosts (``TestHost.boot(netns=NAME)``).

A test host normally shares the machine's network namespace, so anything it does to the network
(an nftables table, a route, an address) is done to the machine. A host booted into a namespace
of the test's own sees only what the test put there: ``lo`` and the addresses and links the test
adds (e.g. 169.254.169.254 on ``lo`` to stand in for the metadata service, or veth pairs and a
bridge between two hosts' namespaces). Nothing in it reaches the machine's network or beyond.

    with network_namespace() as ns:                   # ip netns add bingo-test-...; lo up
        ip(ns, "addr", "add", "169.254.169.254/32", "dev", "lo")
        with TestHost.boot(netns=ns) as host: ...
    # deleted here, even when the body failed; a SIGKILLed run's are removed by cleanup_stale()

Names carry the creating process's pid and start time, so a later run can tell a namespace whose
owner died from one still in use.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

NETNS_DIR = Path("/run/netns")  # where `ip netns add` binds its namespaces
PREFIX = "bingo-test-"


class NetnsError(RuntimeError):
    """A network namespace could not be made, used or removed."""


def _start(pid: int) -> Optional[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def path(name: str) -> Path:
    return NETNS_DIR / name


def ip(name: str, *args: str) -> subprocess.CompletedProcess:
    """``ip -n NAME ARGS``: configure the namespace from outside (raises on failure)."""
    r = subprocess.run(["ip", "-n", name, *args], capture_output=True, text=True)
    if r.returncode:
        raise NetnsError(f"ip -n {name} {' '.join(args)}: {r.stderr.strip()}")
    return r


def is_machine_netns(ns_file: str | Path) -> bool:
    """True if ``ns_file`` (``/proc/PID/ns/net`` or ``/run/netns/NAME``) is this process's own
    network namespace or PID 1's: a guard before a test sends anything it must not send out."""
    st = os.stat(ns_file)
    machine = [os.stat("/proc/self/ns/net")]
    try:
        machine.append(os.stat("/proc/1/ns/net"))
    except PermissionError:  # a sandbox may hide PID 1's: this process's is the one in use
        pass
    return any((st.st_dev, st.st_ino) == (o.st_dev, o.st_ino) for o in machine)


def create(name: Optional[str] = None) -> str:
    """``ip netns add`` a new namespace (a generated ``bingo-test-...`` name by default) with
    ``lo`` up; returns its name. The caller deletes it (:func:`delete`)."""
    if name is None:
        name = f"{PREFIX}{os.getpid()}-{_start(os.getpid())}-{uuid.uuid4().hex[:6]}"
    if path(name).exists():
        raise NetnsError(f"network namespace {name} exists already")
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode:
        raise NetnsError(f"ip netns add {name}: {r.stderr.strip()}")
    try:
        if is_machine_netns(path(name)):  # never: but everything after relies on it
            raise NetnsError(f"{name} is the machine's own network namespace")
        ip(name, "link", "set", "lo", "up")
    except BaseException:
        delete(name)
        raise
    return name


def delete(name: str) -> None:
    """``ip netns del`` (idempotent). The namespace itself lives on until the last process in
    it exits: shut its test hosts down first."""
    if path(name).exists():
        r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
        if r.returncode and path(name).exists():
            raise NetnsError(f"ip netns del {name}: {r.stderr.strip()}")


@contextmanager
def network_namespace(name: Optional[str] = None) -> Iterator[str]:
    """A namespace for the body (see the module docstring), deleted afterwards."""
    made = create(name)
    try:
        yield made
    finally:
        delete(made)


def cleanup_stale() -> list[str]:
    """Delete ``bingo-test-PID-START-...`` namespaces whose creating process is gone."""
    removed = []
    if not NETNS_DIR.is_dir():
        return removed
    for entry in NETNS_DIR.iterdir():
        parts = entry.name[len(PREFIX):].split("-") if entry.name.startswith(PREFIX) else []
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        if _start(int(parts[0])) == parts[1]:
            continue  # its owner still runs
        delete(entry.name)
        removed.append(entry.name)
    return removed
