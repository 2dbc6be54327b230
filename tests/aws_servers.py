"""Local stand-ins for what a bingo-host instance talks to, all on 127.0.0.1.

* :class:`MotoServer`: ``python -m moto.server`` (from this venv) on a free port.
* :class:`IMDSServer`: a small IMDSv2 server (PUT token, 401 without it) with knobs to go
  down or to answer with errors.
* :class:`EC2Proxy`: a pass-through proxy in front of moto that can stall or fail one EC2
  action, to reproduce a hung or failing EC2 API without touching the code under test.
* :class:`LoopMariaDB`: a real ``mariadbd`` whose datadir lives on an ext4 filesystem on a
  loop device mounted on a temp dir (root only), for freezing for real.

pytest fixtures (``pytest_plugins = ["tests.aws_servers"]`` or import them):
``moto_server`` (session), ``imds_server``, ``ec2_proxy``, ``aws_env`` (fake credentials and
endpoint overrides set with monkeypatch, no real AWS or 169.254.169.254 is ever asked),
``ec2_instance`` (an instance with a root volume and a data volume at /dev/sdf in moto, and
the IMDS server answering as that instance), ``loop_mariadb`` (session).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
REGION = "eu-west-1"
AZ = "eu-west-1a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            opener.open(url, timeout=2).read()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen | None, wait: float = 10) -> None:
    """SIGTERM a server this module (or tests/ha_rig.py) started; SIGKILL after `wait` seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- moto --

class MotoServer:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)

    def start(self) -> "MotoServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_http(f"{self.url}/moto-api/")
        except Exception:
            self.stop()
            raise RuntimeError(f"moto_server did not start; see {self.log.name}")
        return self

    def reset(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST",
                                           data=b""), timeout=10).read()

    def stop(self) -> None:
        stop_process(self.proc)


# -- IMDSv2 --

class IMDSServer:
    """IMDSv2 on 127.0.0.1. Knobs: ``down`` (stop listening), ``token_status`` (answer the
    token PUT with this HTTP status), ``get_status`` (answer every GET with it), and the
    instance's ``instance_id``/``region``/``availability_zone``. ``requests`` records
    (method, path, had_valid_token)."""

    def __init__(self, instance_id: str = "i-0123456789abcdef0", region: str = REGION,
                 availability_zone: str = AZ):
        self.instance_id = instance_id
        self.region = region
        self.availability_zone = availability_zone
        self.token_status: int | None = None
        self.get_status: int | None = None
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, bool]] = []
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _paths(self) -> dict[str, str]:
        doc = {"instanceId": self.instance_id, "region": self.region,
               "availabilityZone": self.availability_zone, "accountId": "123456789012"}
        return {
            "/latest/meta-data/instance-id": self.instance_id,
            "/latest/meta-data/placement/region": self.region,
            "/latest/meta-data/placement/availability-zone": self.availability_zone,
            "/latest/dynamic/instance-identity/document": json.dumps(doc),
        }

    def _handler(self):
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                imds.requests.append(("PUT", self.path, False))
                if self.path != "/latest/api/token":
                    return self._send(404)
                if imds.token_status:
                    return self._send(imds.token_status)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._send(400)
                token = os.urandom(16).hex()
                imds.tokens.add(token)
                self._send(200, token)

            def do_GET(self):
                valid = self.headers.get("X-aws-ec2-metadata-token") in imds.tokens
                imds.requests.append(("GET", self.path, valid))
                if not valid:
                    return self._send(401)
                if imds.get_status:
                    return self._send(imds.get_status)
                body = imds._paths().get(self.path)
                self._send(200, body) if body is not None else self._send(404)

        return Handler

    def start(self) -> "IMDSServer":
        self._server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: requests are refused ('not on EC2')."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def down(self) -> bool:
        return self._server is None

    @down.setter
    def down(self, value: bool) -> None:
        if value and not self.down:
            self.stop()
        elif not value and self.down:
            self.start()


# -- EC2 proxy --

class EC2Proxy:
    """Forwards every request to moto, except that ``stall[action] = seconds`` makes that
    action wait (seen[action] is set on arrival), and ``fail[action] = (status, code)``
    answers it with an EC2 error instead. A request with DryRun=true is keyed
    ``"<Action>?DryRun"``, so a knob for "CreateSnapshot" hits only real ones; a ``fail`` key
    ``"<Action>:<VolumeId>"`` hits only requests for that volume (what an IAM policy limited to
    one volume answers). ``calls`` records (time.time(), key). Each of ``hooks`` sees every
    request: ``before(key, form)`` may answer it with an error instead ((status, code)), and
    ``after(key, form, status, body)`` runs once moto answered, before the client hears it."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.stall: dict[str, float] = {}
        self.fail: dict[str, tuple[int, str]] = {}
        self.seen: dict[str, threading.Event] = {}
        self.calls: list[tuple[float, str]] = []
        self.hooks: list = []
        self._released = threading.Event()
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._server: ThreadingHTTPServer | None = None

    def event(self, action: str) -> threading.Event:
        return self.seen.setdefault(action, threading.Event())

    def _handler(self):
        proxy = self
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = urllib.parse.parse_qs(body.decode())
                action = form.get("Action", ["?"])[0]
                if form.get("DryRun", ["false"])[0].lower() == "true":
                    action += "?DryRun"
                proxy.calls.append((time.time(), action))
                proxy.event(action).set()
                if action in proxy.stall:
                    proxy._released.wait(proxy.stall[action])
                refused = proxy.fail.get(f"{action}:{form.get('VolumeId', [''])[0]}") \
                    or proxy.fail.get(action)
                for hook in proxy.hooks:
                    refused = refused or hook.before(action, form)
                if refused:
                    status, code = refused
                    xml = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                           f"<Code>{code}</Code><Message>injected by the test proxy</Message>"
                           f"</Error></Errors><RequestID>test</RequestID></Response>").encode()
                    return self._reply(status, {"Content-Type": "text/xml"}, xml)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body,
                                             headers=headers, method="POST")
                try:
                    with opener.open(req, timeout=30) as resp:
                        status, resp_headers, data = resp.status, dict(resp.headers), resp.read()
                except urllib.error.HTTPError as exc:
                    status, resp_headers, data = exc.code, dict(exc.headers), exc.read()
                for hook in proxy.hooks:
                    hook.after(action, form, status, data)
                self._reply(status, resp_headers, data)

            def _reply(self, status, headers, data):
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                             "server", "date"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def start(self) -> "EC2Proxy":
        self._server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()  # end every stall
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- MariaDB on a loop device --

@dataclass
class LoopMariaDB:
    """mariadbd with its datadir on ext4 on a loop device. Root only.

    ``admin()`` connects as a password user with every privilege; the backup user
    (``bingobackup``, RELOAD only) has ``backup_password`` in ``password_file``.
    """

    size_mb: int = 160
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bingo-loopdb-")))
    loopdev: str | None = None
    proc: subprocess.Popen | None = None
    admin_password: str = "adminpw-0123456789"
    backup_password: str = "backuppw-0123456789"
    app_db: str = "bingo"

    @property
    def image(self) -> Path:
        return self.workdir / "volume.img"

    @property
    def mountpoint(self) -> Path:
        return self.workdir / "mnt"

    @property
    def socket(self) -> str:
        return str(self.workdir / "run" / "mysqld.sock")

    @property
    def password_file(self) -> Path:
        return self.workdir / "db-backup-password"

    def start(self) -> "LoopMariaDB":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install_db = shutil.which("mariadb-install-db")
        if not os.path.exists(mariadbd) or not install_db:
            raise RuntimeError("mariadb-server is not installed (apt-get install mariadb-server)")
        def run(*argv):
            return subprocess.run(argv, check=True, capture_output=True, text=True)

        with open(self.image, "wb") as f:
            f.truncate(self.size_mb * 1024 * 1024)
        self.loopdev = run("losetup", "--find", "--show", str(self.image)).stdout.strip()
        run("mkfs.ext4", "-q", "-F", "-L", "bingo-db", self.loopdev)
        self.mountpoint.mkdir()
        run("mount", self.loopdev, str(self.mountpoint))
        (self.workdir / "run").mkdir()
        os.chmod(self.workdir, 0o755)
        shutil.chown(self.workdir / "run", "mysql", "mysql")
        datadir = self.mountpoint / "data"
        run(install_db, "--no-defaults", f"--datadir={datadir}", "--user=mysql",
            "--auth-root-authentication-method=socket", "--skip-test-db")
        self.password_file.write_text(self.backup_password + "\n")
        os.chmod(self.password_file, 0o600)
        self.proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={datadir}", f"--socket={self.socket}",
             "--skip-networking", "--user=mysql", f"--pid-file={self.workdir}/run/mysqld.pid",
             f"--log-error={self.workdir}/mysqld.err", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=16M"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (self.workdir / "mysqld.err")
                raise RuntimeError("mariadbd did not start: "
                                   + (err.read_text()[-2000:] if err.exists() else "no log"))
            time.sleep(0.1)
        mariadb = shutil.which("mariadb") or shutil.which("mysql")
        sql = f"""
            CREATE DATABASE {self.app_db};
            CREATE TABLE {self.app_db}.writes (id INT AUTO_INCREMENT PRIMARY KEY,
                                               note VARCHAR(64), at DOUBLE) ENGINE=InnoDB;
            CREATE USER 'bingotest'@'localhost' IDENTIFIED BY '{self.admin_password}';
            GRANT ALL ON *.* TO 'bingotest'@'localhost' WITH GRANT OPTION;
            CREATE USER 'bingobackup'@'localhost' IDENTIFIED BY '{self.backup_password}';
            GRANT RELOAD ON *.* TO 'bingobackup'@'localhost';
        """
        for attempt in range(50):
            proc = subprocess.run([mariadb, f"--socket={self.socket}", "-uroot"], input=sql,
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"setting up MariaDB failed: {proc.stderr}")

    def admin(self, **kwargs):
        import pymysql

        return pymysql.connect(unix_socket=self.socket, user="bingotest",
                               password=self.admin_password, database=self.app_db,
                               autocommit=True, **kwargs)

    def thaw(self) -> None:
        subprocess.run(["fsfreeze", "--unfreeze", str(self.mountpoint)], capture_output=True)

    def stop(self) -> None:
        """Thaw first (a frozen mount would hang everything below), then tear down."""
        if self.mountpoint.exists() and os.path.ismount(self.mountpoint):
            self.thaw()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mountpoint.exists() and os.path.ismount(self.mountpoint):
            subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
            if os.path.ismount(self.mountpoint):
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        if self.loopdev:
            subprocess.run(["losetup", "-d", self.loopdev], capture_output=True)
            self.loopdev = None
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- the instance in moto --

@dataclass
class Instance:
    instance_id: str
    root_volume: str
    data_volume: str
    region: str = REGION

    def client(self, **kwargs):
        import boto3

        return boto3.client("ec2", region_name=self.region, **kwargs)


def make_instance(data_device: str = "/dev/sdf") -> Instance:
    """run_instances (moto gives it a root volume at /dev/sda1) + a data volume at data_device;
    uses whatever endpoint the environment names."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                             InstanceType="t3.micro", Placement={"AvailabilityZone": AZ})
    instance = inst["Instances"][0]
    instance_id = instance["InstanceId"]
    root = instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    vol = ec2.create_volume(Size=2, AvailabilityZone=AZ, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=vol, InstanceId=instance_id, Device=data_device)
    return Instance(instance_id, root, vol)


# -- fixtures --

AWS_ENV_CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                   "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
                   "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imds_server():
    server = IMDSServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ec2_proxy(moto_server):
    proxy = EC2Proxy(moto_server.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_server, ec2_proxy, imds_server):
    """Fake credentials; EC2 via the proxy in front of moto; IMDS on loopback; no config files."""
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # IMDS's region must win
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", ec2_proxy.url)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return {"moto": moto_server, "proxy": ec2_proxy, "imds": imds_server}


@pytest.fixture
def ec2_instance(aws_env, moto_server, imds_server) -> Instance:
    moto_server.reset()
    inst = make_instance()
    imds_server.instance_id = inst.instance_id
    imds_server.region = inst.region
    return inst


@pytest.fixture(scope="session")
def loop_mariadb():
    if os.geteuid() != 0:
        pytest.skip("MariaDB on a loop device needs root")
    db = LoopMariaDB().start()
    try:
        yield db
    finally:
        db.stop()
