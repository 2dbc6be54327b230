"""The app's first database bind happens once, before any worker serves (issue 24).

The app (the fixture, as the real music bingo server) binds its database on each worker's first
request: it creates its tables, and the first account when the User table is empty and
`create_superuser` is on, unguarded. Right after a deploy onto an empty database every worker is
fresh, so concurrent first requests bind at once and all but one can fail (a table or the
account made twice): that request answers 500. Here a fresh host's first deploy, then redeploys
onto an emptied database, each followed by a burst of concurrent first requests to the fresh
workers: not one may fail.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import BIN, CONFIG, host_config
from tests.deploying import ENV, ROOT, Bundles, serving, use_the_app

WORKERS = 4  # app.processes, as 'auto' sizes the 24 GiB machine
BURST = 32  # concurrent first requests, several per fresh worker
INI = f"{ROOT}/shared/bingo.ini"


@pytest.fixture(scope="module")
def host(host_pool):
    host = host_pool.fresh()
    try:
        volume = host.attach_volume(size_mb=512)
        host.put_file(CONFIG, host_config(volume.device, app={"processes": WORKERS}), mode=0o600)
        r = host.run([BIN, "bootstrap"], check=False, timeout=1800)
        assert r.returncode == 0, r.stdout + r.stderr
        yield host
    finally:
        host.shutdown()


@pytest.fixture(scope="module")
def bundle(host, wheel, tmp_path_factory):
    return Bundles(host, wheel, tmp_path_factory.mktemp("bundles")).make("first-bind")


def deploy(host, bundle: str, deployment_id: str):
    r = host.run([BIN, "deploy", bundle, "--deployment-id", deployment_id], env=ENV, check=False,
                 timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def burst(n: int = BURST) -> list[int]:
    """n GET /api/user at once (each on its own connection): the statuses, 0 for no answer.
    Without a token the app answers 401, after binding its database first (before_request)."""
    statuses = [0] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        try:
            with urllib.request.urlopen("http://127.0.0.1/api/user", timeout=30) as resp:
                statuses[i] = resp.status
        except urllib.error.HTTPError as exc:
            statuses[i] = exc.code
        except OSError:
            statuses[i] = 0

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def empty_database(host) -> None:
    """The app's database as before its first deploy: none of its tables."""
    host.run(["mariadb", "-e", "DROP TABLE IF EXISTS bingo.User, bingo.Game"])


def set_create_superuser(host, on: bool) -> None:
    """bingo.ini's create_superuser (bingo-host writes false; the app's default is true)."""
    ini = host.read_file(INI)
    old, new = ("false", "true") if on else ("true", "false")
    host.put_file(INI, ini.replace(f"\ncreate_superuser = {old}\n", f"\ncreate_superuser = {new}\n"),
                  mode=0o640)
    host.run(["chown", "root:music-bingo", INI])


def test_concurrent_first_requests_to_fresh_workers_never_fail(host, bundle):
    """A first deploy onto an empty database, then redeploys onto an emptied one (with the app's
    own default create_superuser too: the account made twice was the race the issue measured);
    after each, BURST concurrent first requests to the WORKERS fresh workers all answer 401."""
    rounds = [("d-FIRSTBIND1", False), ("d-FIRSTBIND2", False), ("d-FIRSTBIND3", True),
              ("d-FIRSTBIND4", True)]
    failed = {}
    try:
        for i, (deployment_id, superuser) in enumerate(rounds):
            if i:
                empty_database(host)
            set_create_superuser(host, superuser)
            deploy(host, bundle, deployment_id)
            assert serving(host) == deployment_id
            statuses = burst()
            failed[deployment_id] = sorted(s for s in statuses if s != 401)
    finally:
        set_create_superuser(host, False)
    journal = host.run(["journalctl", "-u", "bingo-uwsgi", "--no-pager", "-o", "cat"]).stdout
    errors = sorted({line for line in journal.splitlines()
                     if "IntegrityError" in line or "OperationalError" in line})[:5]
    assert all(not f for f in failed.values()), (failed, errors)
    use_the_app("firstbind")
