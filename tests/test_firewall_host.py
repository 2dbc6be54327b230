"""The app's user cannot reach the instance metadata service; root can (a test host of its own
network namespace, where 169.254.169.254 and fd00:ec2::254 are addresses on its `lo`).

The host runs only what the rule needs: nftables from the image's package cache, then the app
step (it creates the app's user) and the firewall step. The namespace has no route out, and the
test checks it is not the machine's before any probe: no packet ever goes to the real service.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.harness import netns

APP_USER = "music-bingo"
V4, V6 = "169.254.169.254", "fd00:ec2::254"
UNIT = "bingo-host-firewall.service"

LISTEN = r"""
import socket, sys, threading
def serve(family, addr):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 80)); s.listen(16)
    while True:
        s.accept()[0].close()
threading.Thread(target=serve, args=(socket.AF_INET6, sys.argv[2]), daemon=True).start()
serve(socket.AF_INET, sys.argv[1])
"""

# One line of JSON: {address: "ok" or the errno's name} for a TCP connect to port 80.
PROBE = r"""
import errno, json, socket, sys
out = {}
for addr in sys.argv[1:]:
    try:
        socket.create_connection((addr, 80), timeout=3).close()
        out[addr] = "ok"
    except OSError as e:
        out[addr] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out))
"""

STEPS = r"""
import sys
from bingo_host import logs
from bingo_host.config_file import load_config
from bingo_host.context import make_context
from bingo_host.converge import engine
from bingo_host.converge.steps import app, firewall
logs.install()  # the step lines on stdout, as the CLI shows them
ctx = make_context(load_config("/etc/bingo-host/config.yaml"))
results = engine.run_steps(ctx, (app, firewall))
sys.exit(1 if any(r.status == "failed" for r in results) else 0)
"""


@pytest.fixture(scope="module")
def nshost(host_pool):
    """A test host with bingo-host installed, booted into a namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("test hosts need root")
    with netns.network_namespace() as ns:
        netns.ip(ns, "addr", "add", f"{V4}/32", "dev", "lo")
        netns.ip(ns, "addr", "add", f"{V6}/128", "dev", "lo", "nodad")
        host = host_pool.fresh(netns=ns, root_mode="overlay")  # no swap file: no copy to make and remove
        try:
            yield host
        finally:
            host.shutdown()


def probe(host, user: str | None) -> dict[str, str]:
    # Guard: the probe must never leave a namespace the test made.
    assert host.netns and not netns.is_machine_netns(f"/proc/{host.pid}/ns/net")
    assert os.stat(f"/proc/{host.pid}/ns/net").st_ino == os.stat(netns.path(host.netns)).st_ino
    cmd = ["python3", "-c", PROBE, V4, V6]
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    return json.loads(host.run(cmd).stdout)


def test_app_user_cannot_reach_the_metadata_service_root_can(nshost):
    host = nshost
    host.run(["apt-get", "install", "-y", "-q", "--no-download", "nftables"], timeout=300)
    host.put_file("/etc/bingo-host/config.yaml", "app: {processes: 2}\n", mode=0o600)
    listener = host.popen(["python3", "-c", LISTEN, V4, V6])
    try:
        host.run(["useradd", "--system", "--user-group", "--home-dir", "/var/www/music-bingo",
                  "--no-create-home", "--shell", "/usr/sbin/nologin", APP_USER])
        both_ok = {V4: "ok", V6: "ok"}
        assert probe(host, APP_USER) == both_ok  # before the rule: the probe can succeed

        first = host.run(["/opt/bingo-host/venv/bin/python", "-c", STEPS], check=False, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"start {UNIT}" in first.stdout and f"enable {UNIT}" in first.stdout, first.stdout
        denied = probe(host, APP_USER)
        assert set(denied.values()) <= {"EHOSTUNREACH", "EACCES", "ECONNREFUSED", "EPERM"}, denied
        assert probe(host, None) == both_ok  # root keeps its access
        assert probe(host, "nobody") == both_ok  # only the listed uids

        again = host.run(["/opt/bingo-host/venv/bin/python", "-c", STEPS], check=False, timeout=300)
        assert again.returncode == 0 and "firewall   unchanged" in again.stdout, again.stdout

        # Flushed by hand (as the distribution's nftables.service does): the next run loads it.
        host.run(["nft", "delete", "table", "inet", "bingo_host"])
        assert probe(host, APP_USER) == both_ok
        heal = host.run(["/opt/bingo-host/venv/bin/python", "-c", STEPS], check=False, timeout=300)
        assert f"reload {UNIT} (the table is not loaded)" in heal.stdout, heal.stdout
        assert probe(host, APP_USER) == denied

        # What a boot does: the enabled unit loads the file again.
        host.run(["nft", "delete", "table", "inet", "bingo_host"])
        assert host.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
        host.run(["systemctl", "restart", UNIT])
        assert probe(host, APP_USER) == denied

        # The emperor's second layer must not keep a unit from starting on cgroup v1.
        r = host.run(["systemd-run", "--wait", "--quiet", "-p", f"IPAddressDeny={V4} {V6}", "true"],
                     check=False)
        assert r.returncode == 0, r.stderr
    finally:
        listener.kill()
