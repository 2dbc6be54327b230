"""The HA stack (cloudformation/ha.yaml) on this machine: test hosts behind HAProxy, one external
MariaDB standing in for Aurora, moto for Secrets Manager.

    hub namespace (made here)                    machine's namespace
      br0 10.77.0.1 ─ veth ─ host h1 10.77.0.11      HAProxy: 127.0.0.1:<port>  -> h1, h2, h3
                    ─ veth ─ host h2 10.77.0.12               (their connections and checks
                    ─ veth ─ host h3 10.77.0.13                go through the hub namespace)
      mariadbd 10.77.0.1:3306 (TLS, `db.ha.test`)    moto: 127.0.0.1:<port>
      HAProxy also listens on 10.77.0.1:5000 for the hosts and passes it to moto

Every host is booted into a network namespace of its own (tests/harness), so two or three run at
once, each with only the addresses made here: no namespace has a route out. HAProxy, on this
machine's side, reaches them through the hub namespace (`namespace` on each server line); a
blackhole route for the rig's subnet on this machine keeps anything addressed there from leaving.

What stands in for what, and how faithfully:
- **Target group** -> HAProxy's backend. The health check's path, interval and thresholds are
  read from ha.yaml's TargetGroup (`health_check()`); the deregistration delay too: BlockTraffic
  puts a server in maintenance and waits until no request to it is left, at most that delay.
  Differences: the ALB returns 502 for a request whose target connection fails, HAProxy retries
  it on another server (`option redispatch`); the ALB fails open when every target is unhealthy,
  HAProxy answers 503.
- **CodeDeploy with traffic control** (`DeploymentConfigName: CodeDeployDefault.OneAtATime`,
  `WITH_TRAFFIC_CONTROL`): `rolling_deploy()` takes one host at a time out of the backend (the
  service's BlockTraffic), runs the real agent's `codedeploy-local` on it (BeforeInstall ..
  ValidateService), and puts it back (AllowTraffic), waiting until HAProxy calls it UP, as
  CodeDeploy waits for the target to be healthy. A launch deployment (`boot()`, `deploy_on()`,
  then `haproxy.allow()`) is the same without the BlockTraffic.
- **Aurora** -> mariadbd 10.11 in the hub namespace, TLS with a CA made here (written where ha.yaml's
  config has `database.tls_ca`), a master account that may only log in over TLS and the database
  ha.yaml's cluster creates. Stopping it is a failover or a paused Serverless v2 cluster.
- **The instances' config** is the one ha.yaml's cfn-init writes (`ha_config()`), its ${...}
  filled with the rig's values; only what a test host must differ in is changed (no swap: the
  hosts share a kernel, so each would see the others' swap files as active; 2 workers; metrics
  off: no CloudWatch here).
- The hosts have no route to PyPI: deploys build from a wheelhouse made on this machine (UV_FIND_LINKS,
  an override every uv honours), bind-mounted into each host.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bingo_host.layout import PYUWSGI_REQUIREMENT
from tests import codedeploy_agent
from tests.aws_servers import MotoServer, free_port, stop_process
from tests.harness import netns
from tests.harness.host import WHEELHOUSE, WHEELHOUSE_INSIDE
from tests.templates import CFN_DIR, config_files, load_template
from tests.tls_certs import make_ca, pem, server_cert

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"
HA_TEMPLATE = CFN_DIR / "ha.yaml"
BIN = "/usr/local/bin/bingo-host"
CONFIG = "/etc/bingo-host/config.yaml"
ROOT = "/var/www/music-bingo"
REGION = "eu-west-1"
SUBNET = "10.77.0"
HUB = f"{SUBNET}.1"
DB_HOST = "db.ha.test"
MOTO_PORT_IN_HUB = 5000
MASTER = {"username": "bingoadmin", "password": "Master-Passw0rd-ha-7d1e"}
APP_DB = {"username": "bingoapp", "password": "AppPassw0rdHa5b2c9e1"}
SECRET_KEY = "ha-rig-secret-key-0123456789abcdef0123456789abcdef0123456789abcd"
#: Each HAProxy server's name, and its host's address on the bridge.
SLOTS = {"h1": f"{SUBNET}.11", "h2": f"{SUBNET}.12", "h3": f"{SUBNET}.13"}


def health_check(template: dict | None = None) -> dict:
    """The target group's health check and deregistration delay, as ha.yaml sets them."""
    template = template or load_template(HA_TEMPLATE)
    tg = template["Resources"]["TargetGroup"]["Properties"]
    attrs = {a["Key"]: a["Value"] for a in tg.get("TargetGroupAttributes", [])}
    return {"path": tg["HealthCheckPath"], "interval": int(tg["HealthCheckIntervalSeconds"]),
            "healthy": int(tg["HealthyThresholdCount"]), "unhealthy": int(tg["UnhealthyThresholdCount"]),
            "timeout": int(tg.get("HealthCheckTimeoutSeconds", 5)), "status": str(tg["Matcher"]["HttpCode"]),
            "drain": int(attrs.get("deregistration_delay.timeout_seconds", 300))}


def deployment_style(template: dict | None = None) -> dict:
    """How ha.yaml's deployment group deploys: what rolling_deploy() does in its place."""
    template = template or load_template(HA_TEMPLATE)
    dg = template["Resources"]["DeploymentGroup"]["Properties"]
    return {"config": dg["DeploymentConfigName"], "option": dg["DeploymentStyle"]["DeploymentOption"],
            "type": dg["DeploymentStyle"]["DeploymentType"],
            "target_groups": [t["Name"] for t in dg.get("LoadBalancerInfo", {}).get("TargetGroupInfoList", [])]}


def ha_config(values: dict, template: dict | None = None) -> dict:
    """The config ha.yaml's cfn-init writes, its ${...} filled from values (every one must be)."""
    template = template or load_template(HA_TEMPLATE)
    (_, spec), = config_files(template)
    text, subs = spec["content"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}!]+)\}", text))
    missing = names - set(values) - set(subs)
    assert not missing, f"ha.yaml's config has ${{}} the rig does not fill: {sorted(missing)}"
    filled = {**{k: "" for k in subs}, **values}
    out = re.sub(r"\$\{([^}!]+)\}", lambda m: str(filled[m.group(1)]), text)
    return yaml.safe_load(out)


def wheelhouse(cache: Path = WHEELHOUSE) -> Path:
    """Wheels of everything the fixture app needs, with the override the hosts' config gives
    (mysql==0.0.3), built once per requirements on this machine (mysqlclient from source) into
    the wheelhouse every test host has bind-mounted. Returns its folder on this machine."""
    reqs = [SAMPLE / "requirements.txt", SAMPLE / "mysql-requirements.txt"]
    key = hashlib.sha256(b"".join(p.read_bytes() for p in reqs) + PYUWSGI_REQUIREMENT.encode()).hexdigest()[:12]
    out = cache / f"ha-app-{key}"
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pins = [line.split("#")[0].strip() for p in reqs for line in p.read_text().splitlines()]
    pins = ["mysql==0.0.3" if p == "mysql==0.0.2" else p for p in pins if p]
    for cmd in (["wheel", "-w", str(tmp), *pins],
                # bootstrap's uWSGI virtualenv (pip, prebuilt wheel)
                ["download", "--only-binary", ":all:", "--no-deps", "-d", str(tmp), PYUWSGI_REQUIREMENT]):
        done = subprocess.run([sys.executable, "-m", "pip", *cmd[:1], "-q", "--disable-pip-version-check",
                               *cmd[1:]], capture_output=True, text=True, timeout=900)
        said = [line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location")]
        assert done.returncode == 0, f"pip {cmd[0]} for the wheelhouse failed:\n" + "\n".join(said[-25:])
    (tmp / ".complete").write_text(key + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# ------------------------------------------------------------------------- the balancer

class HAProxy:
    """HAProxy as the ALB: a frontend on 127.0.0.1 for the tests' load, a backend with one server
    per slot (each starts in maintenance: not registered), and a TCP relay in the hub namespace
    that lets the hosts reach moto. Driven through its runtime API (admin socket)."""

    def __init__(self, workdir: Path, hub: str, check: dict, moto_port: int):
        self.workdir, self.hub, self.check = workdir, hub, check
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        self.cfg = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        c = check
        # `namespace` on each server line: HAProxy 2.6 does not take it from default-server (its
        # checks then went out through this machine's default route).
        servers = "\n".join(f"    server {name} {addr}:80 disabled namespace {hub}" for name, addr in SLOTS.items())
        self.cfg.write_text(f"""global
    stats socket {self.socket} mode 600 level admin
    maxconn 2000
defaults
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout check {c['timeout']}s
frontend web
    mode http
    bind 127.0.0.1:{self.port}
    default_backend app
backend app
    mode http
    balance roundrobin
    option httpchk
    http-check send meth GET uri {c['path']} ver HTTP/1.1 hdr Host bingo-ha-rig
    http-check expect status {c['status']}
    option redispatch
    retries 3
    http-response set-header X-Served-By %s
    default-server check inter {c['interval']}s fall {c['unhealthy']} rise {c['healthy']}
{servers}
frontend aws
    mode tcp
    bind {HUB}:{MOTO_PORT_IN_HUB} namespace {hub}
    default_backend moto
backend moto
    mode tcp
    server moto 127.0.0.1:{moto_port}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HAProxy":
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], check=True, capture_output=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def api(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict]:
        """`show stat` of the app backend's servers: name -> {status, scur, ...}."""
        text = self.api("show stat").lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "app" and row["svname"] in SLOTS}

    def status(self, name: str) -> str:
        return self.servers()[name]["status"]

    def set_state(self, name: str, state: str) -> None:
        out = self.api(f"set server app/{name} state {state}").strip()
        assert out == "", f"set server app/{name} state {state}: {out}"

    def block(self, name: str) -> float:
        """BlockTraffic: no new request to it; wait until none is left (at most the target group's
        deregistration delay). Seconds it took."""
        t0 = time.monotonic()
        self.set_state(name, "maint")
        while int(self.servers()[name]["scur"] or 0) and time.monotonic() - t0 < self.check["drain"]:
            time.sleep(0.1)
        return time.monotonic() - t0

    def allow(self, *names: str, timeout: float | None = None) -> float:
        """AllowTraffic: register them and wait until their health checks call them UP. As a
        newly registered target must pass HealthyThresholdCount checks before it gets traffic,
        each starts DOWN and needs `rise` good checks. Seconds it took."""
        t0 = time.monotonic()
        for name in names:
            self.set_state(name, "ready")
            out = self.api(f"set server app/{name} health down").strip()
            assert out == "", out
        timeout = timeout or self.check["interval"] * (self.check["healthy"] + 2) + 10
        while not all(self.status(n).startswith("UP") for n in names):
            assert time.monotonic() - t0 < timeout, f"{names} not UP after {timeout}s: {self.servers()}"
            time.sleep(0.2)
        return time.monotonic() - t0


# ------------------------------------------------------------------------- the database

class ExternalDB:
    """mariadbd in the hub namespace on HUB:3306 with TLS only for the master account, standing in
    for the Aurora cluster (the database ha.yaml's cluster creates, its master user)."""

    def __init__(self, hub: str, database: str):
        # Its own folder under /tmp: mysqld runs as `mysql`, which cannot enter a test's tmp_path.
        self.dir, self.hub, self.database = Path(tempfile.mkdtemp(prefix="bingo-ha-db-")), hub, database
        self.socket = self.dir / "run" / "mysqld.sock"
        self.proc: subprocess.Popen | None = None
        ca_key, self.ca = make_ca("bingo HA rig database CA")
        key, cert = server_cert(ca_key, self.ca, DB_HOST)
        (self.dir / "run").mkdir()
        (self.dir / "tls").mkdir()
        (self.dir / "tls" / "ca.pem").write_bytes(pem(self.ca))
        (self.dir / "tls" / "server.pem").write_bytes(pem(cert))
        (self.dir / "tls" / "server-key.pem").write_bytes(pem(key))
        os.chmod(self.dir, 0o755)
        subprocess.run(["chown", "-R", "mysql:mysql", str(self.dir)], check=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}", "--user=mysql",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True)

    def start(self) -> "ExternalDB":
        tls = self.dir / "tls"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.hub, "/usr/sbin/mariadbd", "--no-defaults",
             f"--datadir={self.dir / 'data'}", f"--socket={self.socket}", "--user=mysql",
             f"--bind-address={HUB}", "--port=3306", f"--pid-file={self.dir / 'run' / 'mysqld.pid'}",
             f"--log-error={self.dir / 'mysqld.err'}", "--innodb-buffer-pool-size=64M",
             f"--ssl-ca={tls / 'ca.pem'}", f"--ssl-cert={tls / 'server.pem'}", f"--ssl-key={tls / 'server-key.pem'}",
             "--skip-name-resolve"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while self.sql("SELECT 1", check=False).returncode:
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                "mariadbd did not start: " + (self.dir / "mysqld.err").read_text()[-2000:]
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        stop_process(self.proc, 60)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, statement: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statement],
                              capture_output=True, text=True, check=check)

    def create_cluster(self) -> None:
        """What creating the cluster makes: its database, and the master user (TLS only)."""
        self.sql(f"CREATE DATABASE {self.database}; "
                 f"CREATE USER '{MASTER['username']}'@'%' IDENTIFIED BY '{MASTER['password']}' REQUIRE SSL; "
                 f"GRANT ALL PRIVILEGES ON *.* TO '{MASTER['username']}'@'%' WITH GRANT OPTION")


# ------------------------------------------------------------------------- the load

@dataclass
class Answer:
    start: float            # time.monotonic() when sent
    ms: float
    path: str
    status: int             # 0: no answer
    server: str = ""        # HAProxy's X-Served-By
    release: str = ""       # the release the app answered from (the unknown-API-path probe)


class RigLoad:
    """`rate` requests a second through HAProxy, cycling through `paths` (a path, or (path,
    headers)), each on a new connection, from a thread pool; every answer is kept (Answer)."""

    def __init__(self, port: int, paths, rate: float = 20, timeout: float = 10, max_seconds: float = 900):
        self.port, self.rate, self.timeout, self.max_seconds = port, rate, timeout, max_seconds
        self.paths = [(p, {}) if isinstance(p, str) else p for p in paths]
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, path: str, headers: dict) -> None:
        t0 = time.monotonic()
        status, server, release = 0, "", ""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                conn.request("GET", path, headers={"Connection": "close", **headers})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                status, server = resp.status, resp.getheader("X-Served-By") or ""
                release = release_of(body)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            pass
        with self._lock:
            self.answers.append(Answer(t0, (time.monotonic() - t0) * 1000, path, status, server, release))

    def _run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=64) as pool:
            t0, i = time.monotonic(), 0
            while not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds:
                pool.submit(self._one, *self.paths[i % len(self.paths)])
                i += 1
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self) -> "RigLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1)
        self._stop.set()
        self._thread.join()

    def since(self, t: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.start >= t]

    def summary(self) -> dict:
        answers = self.answers
        lat = sorted(a.ms for a in answers if a.status)
        pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None  # noqa: E731
        return {"requests": len(answers), "failed": sum(1 for a in answers if not 200 <= a.status < 300),
                "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


RELEASE_MARK = "bingo-ha-release:"


def release_of(body: str) -> str:
    i = body.find(RELEASE_MARK)
    return body[i + len(RELEASE_MARK):].split("-->", 1)[0].strip() if i >= 0 else ""


# ------------------------------------------------------------------------- the rig

@dataclass
class RigHost:
    name: str
    address: str
    ns: str
    host: object
    bootstrap_seconds: float = 0.0

    def run(self, *argv, **kw):
        return self.host.run(list(argv), **kw)

    def request(self, path: str, method: str = "GET", data: dict | None = None,
                token: str | None = None) -> tuple[int, str]:
        """A request to the host itself (its nginx), from inside it: not through the balancer."""
        args = ["-H", f"Authorization: Bearer {token}"] if token else []
        if data is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        r = self.host.run(["curl", "-s", "-X", method, "-o", "/dev/stderr", "-w", "%{http_code}", "-m", "10",
                           *args, f"http://127.0.0.1{path}"], check=False,
                          input=json.dumps(data) if data is not None else None)
        return int(r.stdout or 0), r.stderr


class Rig:
    """See the module docstring. A context manager: everything it made is gone afterwards, even
    when the body failed."""

    def __init__(self, host_pool, wheel: Path, workdir: Path, processes: int = 2):
        self.pool, self.wheel, self.workdir, self.processes = host_pool, wheel, workdir, processes
        self.template = load_template(HA_TEMPLATE)
        self.check = health_check(self.template)
        self.hosts: dict[str, RigHost] = {}
        self._namespaces: list[str] = []
        self._guard = False
        self.moto = self.haproxy = self.db = None
        self.secrets: dict[str, str] = {}
        self.bundles: dict[str, Path] = {}
        self.current: str | None = None   # the release of the last successful deployment

    # -- set up / tear down
    def __enter__(self) -> "Rig":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        self.wheels = wheelhouse()
        # A guard: whatever goes wrong, nothing addressed to the rig's subnet leaves this machine.
        if not subprocess.run(["ip", "route", "show", f"{SUBNET}.0/24"], capture_output=True, text=True).stdout:
            subprocess.run(["ip", "route", "add", "blackhole", f"{SUBNET}.0/24"], check=True)
            self._guard = True
        self.hub = netns.create()
        self._namespaces.append(self.hub)
        netns.ip(self.hub, "link", "add", "br0", "type", "bridge")
        netns.ip(self.hub, "addr", "add", f"{HUB}/24", "dev", "br0")
        netns.ip(self.hub, "link", "set", "br0", "up")
        self.moto = MotoServer().start()
        self.haproxy = HAProxy(self.workdir, self.hub, self.check, self.moto.port).start()
        self.database = self._values()["DatabaseName"]
        self.db = ExternalDB(self.hub, self.database)
        self.db.start()
        self.db.create_cluster()
        sm = self.aws("secretsmanager")
        self.secrets = {
            "AppSecretKey": sm.create_secret(Name="ha-rig-app-secret-key", SecretString=SECRET_KEY)["ARN"],
            "AppDatabaseSecret": sm.create_secret(Name="ha-rig-app-db", SecretString=json.dumps(APP_DB))["ARN"],
            "MasterUserSecret": sm.create_secret(Name="rds!cluster-ha-rig", SecretString=json.dumps(MASTER))["ARN"],
        }

    def close(self) -> None:
        for rh in list(self.hosts.values()):
            try:
                rh.host.shutdown()
            except Exception:  # noqa: BLE001 - tear the rest down too
                pass
        for part in (self.haproxy, self.moto):
            if part is not None:
                part.stop()
        if self.db is not None:
            self.db.remove()
        for ns in reversed(self._namespaces):
            netns.delete(ns)
        self._namespaces.clear()
        if self._guard:
            subprocess.run(["ip", "route", "del", "blackhole", f"{SUBNET}.0/24"], capture_output=True)
            self._guard = False

    def aws(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.moto.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    @property
    def host_env(self) -> dict:
        """What a host's bingo-host gets where an instance has its role and region: moto through
        the hub, fake credentials; the wheelhouse for bootstrap's pip and deploys' uv (no route to PyPI)."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": f"http://{HUB}:{MOTO_PORT_IN_HUB}", "AWS_EC2_METADATA_DISABLED": "true",
                "UV_FIND_LINKS": f"{WHEELHOUSE_INSIDE}/{self.wheels.name}",
                "PIP_FIND_LINKS": f"{WHEELHOUSE_INSIDE}/{self.wheels.name}", "PIP_NO_INDEX": "1",
                "BINGO_HOST_VALIDATE_TIMEOUT": "8"}

    def _values(self) -> dict:
        return {"AWS::StackName": "bingo-ha-rig", "AppSecretKey": self.secrets.get("AppSecretKey", ""),
                "DatabaseCluster.Endpoint.Address": DB_HOST, "DatabaseCluster.Endpoint.Port": 3306,
                "DatabaseName": "bingo", "AppDatabaseSecret": self.secrets.get("AppDatabaseSecret", ""),
                "DatabaseCluster.MasterUserSecret.SecretArn": self.secrets.get("MasterUserSecret", ""),
                "RequireSignature": "false", "SigningKeyOrNull": "null", "MailConfig": ""}

    def config(self) -> str:
        data = ha_config(self._values(), self.template)
        data["swap"] = {"size": 0}  # the hosts share one kernel: one's swap file is in all's /proc/swaps
        data["app"]["processes"] = self.processes
        data["metrics"] = {"enabled": False}
        return yaml.safe_dump(data, sort_keys=False)

    # -- hosts
    def boot(self, name: str) -> RigHost:
        """A host in slot `name` (its own namespace, a veth into the hub), bootstrapped with
        ha.yaml's config and the CodeDeploy agent installed: what cfn-init leaves. Not behind the
        balancer (its server stays in maintenance) and serving no release yet."""
        address = SLOTS[name]
        ns = netns.create()
        self._namespaces.append(ns)
        veth = f"vh-{name}"
        netns.ip(self.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        netns.ip(self.hub, "link", "set", veth, "master", "br0", "up")
        netns.ip(ns, "addr", "add", f"{address}/24", "dev", "eth0")
        netns.ip(ns, "link", "set", "eth0", "up")
        host = self.pool.boot_beside(netns=ns)
        rh = self.hosts[name] = RigHost(name, address, ns, host)
        host.run_shell(f"echo '{HUB} {DB_HOST}' >> /etc/hosts")
        host.put_file("/etc/bingo-host/rds-global-bundle.pem", pem(self.db.ca))
        host.put_file(CONFIG, self.config(), mode=0o600)
        codedeploy_agent.install(host, packages=False)
        t0 = time.monotonic()
        r = host.run([BIN, "bootstrap"], env=self.host_env, check=False, timeout=1200)
        rh.bootstrap_seconds = time.monotonic() - t0
        assert r.returncode == 0, f"bootstrap of {name}: {r.stdout}{r.stderr}"
        return rh

    def bundle(self, release: str) -> str:
        """The fixture app bundled as `release` (its pages say so: release_of()), in every host."""
        if release not in self.bundles:
            app = self.workdir / f"app-{release}"
            shutil.copytree(SAMPLE, app)
            (app / "musicbingo" / "bundle-name.txt").write_text(release + "\n")
            index = app / "client" / "build" / "index.html"
            index.write_text(index.read_text() + f"<!-- {RELEASE_MARK} {release} -->\n")
            out = self.workdir / f"{release}.zip"
            subprocess.run([str(REPO / ".venv/bin/python"), "-m", "bingo_host", "bundle", "--app", str(app),
                            "--out", str(out), "--format", "zip", "--wheel", str(self.wheel)],
                           check=True, cwd=REPO, capture_output=True)
            self.bundles[release] = out
        inside = f"/root/bundles/{release}.zip"
        for rh in self.hosts.values():
            if rh.host.alive and not (rh.host.root / inside.lstrip("/")).exists():
                rh.host.put_file(inside, self.bundles[release].read_bytes())
        return inside

    def deploy_on(self, rh: RigHost, release: str) -> float:
        """The real agent's deployment of `release` on one host (BeforeInstall..ValidateService)."""
        bundle = self.bundle(release)
        t0 = time.monotonic()
        r = codedeploy_agent.deploy(rh.host, bundle, "zip", env=self.host_env)
        assert r.returncode == 0, f"deploy of {release} on {rh.name}: {r.stdout[-3000:]}{r.stderr[-2000:]}"
        return time.monotonic() - t0

    def rolling_deploy(self, release: str) -> dict:
        """OneAtATime with traffic control: per host BlockTraffic, the deployment, AllowTraffic.
        Timings per host."""
        times = {}
        for name, rh in self.hosts.items():
            if not rh.host.alive:
                continue
            blocked = self.haproxy.block(name)
            deployed = self.deploy_on(rh, release)
            allowed = self.haproxy.allow(name)
            times[name] = {"block": round(blocked, 2), "deploy": round(deployed, 2), "allow": round(allowed, 2)}
        self.current = release
        return times

    def load(self, paths, rate: float = 20) -> RigLoad:
        """Steady load through the balancer (a context manager)."""
        return RigLoad(self.haproxy.port, paths, rate=rate)

    release_of = staticmethod(release_of)

    def wait_dead(self, name: str, timeout: float = 30) -> float:
        """Wait until no process of the host is left (after kill()); the time it was so."""
        rh = self.hosts[name]
        deadline = time.monotonic() + timeout
        while _pids_under(rh.host.root):
            assert time.monotonic() < deadline, f"{name}'s processes still run {timeout}s after the kill"
            time.sleep(0.05)
        return time.monotonic()

    def kill(self, name: str) -> float:
        """Stop a host hard, as an instance that loses power: every process of it SIGKILLed at
        once (its namespace and address stay: nothing answers there). The time it happened."""
        rh = self.hosts[name]
        t = time.monotonic()
        os.kill(rh.host.pid, signal.SIGKILL)  # PID 1 of its PID namespace: the kernel kills the rest
        return t


def _pids_under(root: Path) -> list[int]:
    """Processes whose root is the host's."""
    found = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.readlink(f"/proc/{p}/root").startswith(str(root)):
                found.append(int(p))
        except OSError:
            pass
    return found
