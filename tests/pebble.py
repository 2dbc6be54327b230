"""Pebble (a test ACME server) and pebble-challtestsrv (its mock DNS), on 127.0.0.1 of this machine.

The systemd test host shares the machine's network namespace, so certbot inside it reaches
pebble on 127.0.0.1, and pebble validates HTTP-01 on port 80 of whatever the mock DNS answers:
127.0.0.1 for every name by default, i.e. the test host's nginx.

    with Pebble.start(tmp_path) as pebble:
        pebble.directory        # https://127.0.0.1:PORT/dir, for --server
        pebble.ca_cert          # the TLS certificate pebble serves its API with (REQUESTS_CA_BUNDLE)
        pebble.root_pem()       # the root that issued certificates chain to
        pebble.no_address()     # the mock DNS stops answering A queries: validation fails

Only loopback addresses are ever used. Ports (other than 80, which pebble connects to) are
picked free at start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all held bound until every one is chosen (ports chosen one
    at a time and released at once can repeat: CI once gave challtestsrv's DNS and management
    servers the same one)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "pebble-cert.pem", directory / "pebble-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return cert, key


class Pebble:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self.procs: list[subprocess.Popen] = []
        self.acme_port, self.mgmt_port, self.dns_port, self.dns_mgmt_port = free_ports(4)
        self.ca_cert, self.ca_key = _make_cert(workdir)
        self._ctx = ssl.create_default_context(cafile=str(self.ca_cert))

    @classmethod
    def start(cls, workdir: Path) -> "Pebble":
        if not (os.access(PEBBLE, os.X_OK) and os.access(CHALLTESTSRV, os.X_OK)):
            import pytest

            pytest.skip("pebble is not installed (apt-get install pebble)")
        p = cls(Path(workdir))
        try:
            p._start()
        except BaseException:
            p.stop()
            raise
        return p

    def _spawn(self, argv, env=None, name="proc"):
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(proc)
        return proc

    def _start(self) -> None:
        self._spawn([CHALLTESTSRV, "-management", f"127.0.0.1:{self.dns_mgmt_port}",
                     "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
                     "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                    name="challtestsrv")
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(self.ca_cert), "privateKey": str(self.ca_key),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        (self.dir / "pebble.json").write_text(json.dumps(config))
        self._spawn([PEBBLE, "-config", str(self.dir / "pebble.json"),
                     "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                    env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}, name="pebble")
        deadline = time.monotonic() + 30
        while True:
            try:
                self._get(self.directory)
                self._dns_post("set-default-ipv4", {"ip": "127.0.0.1"})
                return
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    raise RuntimeError("pebble did not start:\n" + self.logs())
                time.sleep(0.2)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def _get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._ctx, timeout=10) as resp:
            return resp.read()

    def _dns_post(self, endpoint: str, body: dict) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.dns_mgmt_port}/{endpoint}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def root_pem(self) -> str:
        """The root certificate issued certificates chain to (management API)."""
        return self._get(f"https://127.0.0.1:{self.mgmt_port}/roots/0").decode()

    def no_address(self) -> None:
        """Names resolve to no A record (and no AAAA): HTTP-01 validation cannot connect."""
        self._dns_post("set-default-ipv4", {"ip": ""})

    def default_address(self) -> None:
        self._dns_post("set-default-ipv4", {"ip": "127.0.0.1"})

    def logs(self) -> str:
        return "\n".join(f"--- {f.name} ---\n{f.read_text(errors='replace')[-3000:]}"
                         for f in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
