"""High availability as cloudformation/ha.yaml builds it, on this machine (tests/ha_rig.py): two
bootstrapped hosts, each in a network namespace of its own, behind HAProxy checking them as the
target group does, one external MariaDB standing in for Aurora, under steady load through the
balancer. The tests run in order on one rig: a shared user, a rolling deployment, a database
outage, a host stopped hard, a third host joining.

Figures (p99, failures, timings) are printed and written to $BINGO_HA_REPORT when set (bench/ha).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from tests.ha_rig import HA_TEMPLATE, HAProxy, Rig, deployment_style, ha_config, health_check
from tests.templates import load_template

API_PROBE = "/api/ha-probe"   # no API route: the app answers its own release's index page
USER = {"username": "ha-player", "password": "pw-ha-player-1", "email": "ha-player@example.com"}
REPORT: dict = {}


def report(name: str, **figures) -> None:
    REPORT[name] = figures
    print(f"\nHA {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    if os.environ.get("BINGO_HA_REPORT"):
        with open(os.environ["BINGO_HA_REPORT"], "w") as f:
            json.dump(REPORT, f, indent=1)


def test_the_rig_stands_in_for_what_ha_yaml_configures(tmp_path):
    """The rig deploys as the deployment group does (one instance at a time, traffic control) and
    its HAProxy checks as the target group does, through the hub namespace on every server line
    (else its checks would leave this machine through the default route)."""
    template = load_template(HA_TEMPLATE)
    style = deployment_style(template)
    assert style == {"config": "CodeDeployDefault.OneAtATime", "option": "WITH_TRAFFIC_CONTROL",
                     "type": "IN_PLACE", "target_groups": [{"Fn::GetAtt": ["TargetGroup", "TargetGroupName"]}]}
    check = health_check(template)
    proxy = HAProxy(tmp_path, "bingo-test-hub", check, 4321)
    cfg = proxy.cfg.read_text()
    assert f"uri {check['path']} ver HTTP/1.1" in cfg
    assert f"check inter {check['interval']}s fall {check['unhealthy']} rise {check['healthy']}" in cfg
    servers = [line for line in cfg.splitlines() if line.strip().startswith("server h")]
    assert len(servers) == 3 and all(line.endswith("disabled namespace bingo-test-hub") for line in servers)
    if shutil.which("haproxy"):
        r = subprocess.run(["haproxy", "-c", "-f", str(proxy.cfg)], capture_output=True, text=True)
        assert r.returncode == 0 or "namespace" in r.stderr, r.stderr  # the hub does not exist here


def test_the_rig_runs_the_config_ha_yaml_writes():
    values = {"AWS::StackName": "s", "AppSecretKey": "arn:k", "DatabaseCluster.Endpoint.Address": "db.example",
              "DatabaseCluster.Endpoint.Port": 3306, "DatabaseName": "bingo", "AppDatabaseSecret": "arn:a",
              "DatabaseCluster.MasterUserSecret.SecretArn": "arn:m", "RequireSignature": "false",
              "SigningKeyOrNull": "null", "MailConfig": ""}
    cfg = ha_config(values)
    assert cfg["database"]["admin_secret"] == "secretsmanager:arn:m"
    assert cfg["database"]["tls_ca"] == "/etc/bingo-host/rds-global-bundle.pem"
    assert cfg["musicbingo"]["secret_key"] == "secretsmanager:arn:k"
    with pytest.raises(AssertionError, match="DatabaseName"):
        ha_config({k: v for k, v in values.items() if k != "DatabaseName"})


@pytest.fixture(scope="module")
def rig(host_pool, wheel, tmp_path_factory):
    with Rig(host_pool, wheel, tmp_path_factory.mktemp("ha-rig")) as rig:
        hosts = [rig.boot(name) for name in ("h1", "h2")]
        for rh in hosts:
            rig.deploy_on(rh, "one")
        rig.current = "one"
        allowed = rig.haproxy.allow("h1", "h2")
        report("setup", bootstrap_s=[round(rh.bootstrap_seconds, 1) for rh in hosts],
               allow_s=round(allowed, 1), health_check=rig.check)
        yield rig


@pytest.fixture(scope="module")
def token(rig):
    """A user registered, then logged in, through h1 (its own nginx, not the balancer)."""
    h1 = rig.hosts["h1"]
    status, body = h1.request("/api/user", "PUT", USER)
    assert status == 200, body
    status, body = h1.request("/api/user", "POST", {"username": USER["username"], "password": USER["password"]})
    assert status == 200, body
    return json.loads(body)["access_token"]


def load_paths(token: str) -> list:
    """What the load sends, in turn: the app without the database (it answers with its release),
    the app with the database (the user's own record), the client's page (nginx only)."""
    return [API_PROBE, ("/api/user", {"Authorization": f"Bearer {token}"}), "/"]


def needs_db(answer) -> bool:
    return answer.path == "/api/user"


def test_a_user_registered_through_one_host_is_recognised_by_the_other(rig, token):
    status, body = rig.hosts["h2"].request("/api/user", token=token)
    assert status == 200, body
    assert json.loads(body)["username"] == USER["username"]
    status, body = rig.hosts["h2"].request("/api/user", "POST", {"username": USER["username"], "password": "wrong"})
    assert status == 401, body
    status, body = rig.hosts["h2"].request("/api/user", token=token[:-4] + "AAAA")
    assert status == 422 and "Signature verification failed" in body, body  # not signed with the shared key


def test_a_rolling_deployment_loses_no_request_and_never_mixes_releases_in_a_host(rig, token):
    with rig.load(load_paths(token)) as load:
        time.sleep(2)
        t0 = time.monotonic()
        times = rig.rolling_deploy("two")
        took = time.monotonic() - t0
        time.sleep(2)
    s = load.summary()
    report("rolling_deploy", seconds=round(took, 1), hosts=times, **s)
    failed = [a for a in load.answers if not 200 <= a.status < 300]
    assert s["failed"] == 0, failed[:10]
    by_host: dict[str, list[str]] = {}
    for a in sorted(load.answers, key=lambda a: a.start):
        if a.path == API_PROBE:
            assert a.release in ("one", "two"), a
            by_host.setdefault(a.server, []).append(a.release)
    assert set(by_host) == {"h1", "h2"}, by_host.keys()
    for server, releases in by_host.items():
        switch = releases.index("two") if "two" in releases else len(releases)
        assert set(releases[switch:]) == {"two"}, f"{server} served the old release after the new: {releases}"
        assert releases[-1] == "two", releases


def test_the_database_down_for_a_minute_fails_only_what_needs_it_and_replaces_nothing(rig, token):
    hosts = [rig.hosts[n] for n in ("h1", "h2")]
    pids = {rh.name: uwsgi_pids(rh) for rh in hosts}
    states, stop_watch = [], threading.Event()

    def watch():  # what decides replacement: the balancer's health check
        while not stop_watch.is_set():
            states.append((time.monotonic(), {n: rig.haproxy.status(n) for n in ("h1", "h2")}))
            stop_watch.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    with rig.load(load_paths(token)) as load:
        watcher.start()
        time.sleep(3)
        rig.db.stop()  # returns once mariadbd has exited (its shutdown takes a moment)
        t_stop = time.monotonic()
        time.sleep(5)
        deep = {rh.name: rh.request("/api/health")[0] for rh in hosts}
        time.sleep(max(0.0, t_stop + 60 - time.monotonic()))
        t_back = time.monotonic()  # from here on it may answer: start() returns once it does
        rig.db.start()
        time.sleep(20)
        stop_watch.set()
        watcher.join()
    during = [a for a in load.answers if t_stop <= a.start <= t_back]
    db_during = [a for a in during if needs_db(a)]
    other_during = [a for a in during if not needs_db(a)]
    back = {}
    for name in ("h1", "h2"):
        ok = [a.start for a in load.since(t_back) if needs_db(a) and a.server == name and a.status == 200]
        back[name] = round(min(ok) - t_back, 1) if ok else None
    report("database_outage", outage_s=round(t_back - t_stop, 1), db_requests=len(db_during),
           db_statuses=sorted({a.status for a in db_during}), other_requests=len(other_during),
           other_failed=sum(1 for a in other_during if a.status != 200), back_after_s=back,
           deep_check_during=deep)
    assert db_during and other_during
    assert {a.status for a in db_during} == {503}, sorted({a.status for a in db_during})
    assert all(a.status == 200 for a in other_during), [a for a in other_during if a.status != 200][:5]
    assert deep == {"h1": 503, "h2": 503}, deep  # the deep check (ValidateService, status) does fail
    assert states and all(s.startswith("UP") for _, st in states for s in st.values()), \
        [st for _, st in states if any(not s.startswith("UP") for s in st.values())][:3]
    for name, seconds in back.items():
        assert seconds is not None and seconds <= 15, back
        late = [a for a in load.since(t_back + seconds) if needs_db(a) and a.server == name and a.status != 200]
        assert not late, late[:5]
    assert {rh.name: uwsgi_pids(rh) for rh in hosts} == pids  # nothing restarted


def uwsgi_pids(rh) -> tuple:
    """The emperor's main PID and its restart count: unchanged unless the service restarted."""
    out = rh.run("systemctl", "show", "-p", "MainPID", "-p", "NRestarts", "bingo-uwsgi").stdout
    return tuple(sorted(out.split()))


def test_a_host_stopped_hard_is_taken_out_and_the_other_serves_on(rig, token):
    check = rig.check
    with rig.load(load_paths(token)) as load:
        time.sleep(3)
        t_kill = rig.kill("h2")
        t_dead = rig.wait_dead("h2")
        while not rig.haproxy.status("h2").startswith("DOWN"):
            assert time.monotonic() - t_kill < check["interval"] * (check["unhealthy"] + 1) + check["timeout"] + 5, \
                rig.haproxy.servers()["h2"]
            time.sleep(0.2)
        t_down = time.monotonic()
        time.sleep(5)
    in_flight = [a for a in load.answers if a.start < t_dead and not 200 <= a.status < 300]
    after = [a for a in load.answers if a.start >= t_dead and not 200 <= a.status < 300]
    late = [a for a in load.since(t_down) if a.server != "h1"]
    report("hard_stop", taken_out_after_s=round(t_down - t_kill, 1),
           bound_s=check["interval"] * check["unhealthy"] + check["timeout"],
           requests=len(load.answers), failed_in_flight=len(in_flight), failed_after=len(after),
           **{k: v for k, v in load.summary().items() if k.startswith("p")})
    assert t_down - t_kill <= check["interval"] * check["unhealthy"] + check["timeout"] + 2
    assert after == [], after[:5]
    assert late == [], late[:5]


def test_a_new_host_serves_the_current_release_before_it_joins(rig, token):
    t0 = time.monotonic()
    rh = rig.boot("h3")
    rig.deploy_on(rh, rig.current)
    assert rig.haproxy.status("h3") == "MAINT"  # not behind the balancer yet
    status, body = rh.request(API_PROBE)
    assert status == 200 and rig.release_of(body) == "two", (status, body[-200:])
    status, body = rh.request("/api/user", token=token)  # the shared database and key
    assert status == 200, body
    ready = time.monotonic() - t0
    allowed = rig.haproxy.allow("h3")
    with rig.load(load_paths(token)) as load:
        time.sleep(6)
    from_h3 = [a for a in load.answers if a.server == "h3"]
    report("join", ready_s=round(ready, 1), allow_s=round(allowed, 1), bootstrap_s=round(rh.bootstrap_seconds, 1),
           **load.summary())
    assert from_h3 and load.summary()["failed"] == 0
    assert {a.release for a in from_h3 if a.path == API_PROBE} == {"two"}
