"""The certificate kept on the data volume (https_kept.py): when bootstrap takes it back instead of
asking the CA, and when the kept copy is renewed; certbot's tree in tmp_path, a real certificate
from openssl. The whole path (certbot, pebble, a replacement host) is test_restore_host's."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from bingo_host import https, https_kept, state
from bingo_host.config_file import load_config_text
from bingo_host.deploy import DeployError
from bingo_host.errors import ConfigError

DOMAIN = "bingo.example.com"
PEBBLE = "https://127.0.0.1:14000/dir"


@pytest.fixture
def certbot_tree(tmp_path, monkeypatch):
    """A certbot tree for DOMAIN (live/ links into archive/, as certbot lays it out) and the
    HTTPS record, where bingo-host reads them."""
    le = tmp_path / "etc-letsencrypt"
    archive, live = le / "archive" / DOMAIN, le / "live" / DOMAIN
    archive.mkdir(parents=True, mode=0o700)
    live.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "30", "-subj", f"/CN={DOMAIN}", "-keyout", str(archive / "privkey1.pem"),
                    "-out", str(archive / "fullchain1.pem")], check=True, capture_output=True)
    for name in ("fullchain", "privkey"):
        os.symlink(f"../../archive/{DOMAIN}/{name}1.pem", live / f"{name}.pem")
    monkeypatch.setattr(https_kept, "LETSENCRYPT", str(le))
    monkeypatch.setattr(state, "LETSENCRYPT_LIVE", str(le / "live"))
    monkeypatch.setattr(state, "HTTPS_FILE", str(tmp_path / "https.json"))
    state.write_json(state.HTTPS_FILE, {"domain": DOMAIN, "email": "ops@example.com", "server": PEBBLE})
    return le


def forget_the_host(le: Path) -> None:
    """A new instance: no certbot tree, no HTTPS record."""
    subprocess.run(["rm", "-rf", str(le), state.HTTPS_FILE], check=True)


def test_kept_then_taken_back_on_a_new_host(certbot_tree, tmp_path):
    kept = tmp_path / "vol" / "bingo-host" / "letsencrypt"
    req = https.Request(DOMAIN, "ops@example.com", PEBBLE)
    assert https_kept.keep(str(kept), req).startswith("kept the certificate")
    assert oct(kept.stat().st_mode & 0o777) == "0o700"
    assert os.path.islink(kept / "letsencrypt" / "live" / DOMAIN / "fullchain.pem")
    assert https_kept.keep(str(kept), req) is None  # current: not copied again
    before = (certbot_tree / "archive" / DOMAIN / "fullchain1.pem").read_bytes()
    assert https_kept.take_back(str(kept), req) is None  # this host has its certificate
    forget_the_host(certbot_tree)
    said = https_kept.take_back(str(kept), req)
    assert said.startswith("took back the certificate kept on the data volume (3"), said
    assert Path(state.cert_path(DOMAIN)).read_bytes() == before
    assert state.read_json(state.HTTPS_FILE)["server"] == PEBBLE


def test_a_renewed_certificate_is_kept_again(certbot_tree, tmp_path):
    kept = tmp_path / "vol" / "kept"
    req = https.Request(DOMAIN, None, PEBBLE)
    https_kept.keep(str(kept), req)
    (certbot_tree / "archive" / DOMAIN / "fullchain2.pem").write_text("renewed\n")
    os.unlink(certbot_tree / "live" / DOMAIN / "fullchain.pem")
    os.symlink(f"../../archive/{DOMAIN}/fullchain2.pem", certbot_tree / "live" / DOMAIN / "fullchain.pem")
    assert https_kept.keep(str(kept), req)
    assert (kept / "letsencrypt" / "live" / DOMAIN / "fullchain.pem").read_text() == "renewed\n"
    assert sorted(p.name for p in kept.parent.iterdir()) == ["kept"]  # no .new or .old left


@pytest.mark.parametrize("req,why", [
    (https.Request("other.example.com", None, PEBBLE), "not other.example.com from"),
    (https.Request(DOMAIN, None, None), "not bingo.example.com from Let's Encrypt: not reused"),
    (https.Request(DOMAIN, None, https.STAGING), "not reused"),
])
def test_another_domain_or_ca_is_not_reused(certbot_tree, tmp_path, req, why):
    kept = tmp_path / "kept"
    https_kept.keep(str(kept), https.Request(DOMAIN, None, PEBBLE))
    forget_the_host(certbot_tree)
    assert why in https_kept.take_back(str(kept), req)
    assert not os.path.exists(certbot_tree)


def test_an_expired_or_missing_kept_certificate_is_not_reused(certbot_tree, tmp_path):
    kept = tmp_path / "kept"
    req = https.Request(DOMAIN, None, PEBBLE)
    https_kept.keep(str(kept), req)
    forget_the_host(certbot_tree)
    assert "expired" in https_kept.take_back(str(kept), req, now=time.time() + 30 * 86400)
    assert not os.path.exists(certbot_tree)
    assert "no certificate is kept" in https_kept.take_back(str(tmp_path / "none"), req)


def test_the_request_comes_from_the_config():
    cfg = load_config_text(f"https: {{domain: {DOMAIN}, email: ops@example.com}}\n")
    assert https_kept.wanted(cfg)
    assert https_kept.request(cfg) == https.Request(DOMAIN, "ops@example.com", None)
    staging = load_config_text(f"https: {{domain: {DOMAIN}, email: ops@example.com, server: staging}}\n")
    assert https_kept.request(staging).server == https.STAGING
    own = load_config_text(f"https: {{domain: {DOMAIN}, email: ops@example.com, server: '{PEBBLE}'}}\n")
    assert https_kept.request(own).server == PEBBLE
    assert not https_kept.wanted(load_config_text(f"https: {{domain: {DOMAIN}}}\n"))
    with pytest.raises(ConfigError, match="https.server"):
        load_config_text("https: {server: 'http://acme.example.com/dir'}\n")


def test_a_kept_tree_root_does_not_own_is_not_taken_back(certbot_tree, tmp_path):
    """A renewal config holds hooks certbot runs as root: only root's own copy is taken back."""
    kept = tmp_path / "vol" / "kept"
    req = https.Request(DOMAIN, None, PEBBLE)
    https_kept.keep(str(kept), req)
    forget_the_host(certbot_tree)
    os.chown(kept, 999, 999)
    with pytest.raises(DeployError, match="uid 999"):
        https_kept.take_back(str(kept), req)
    assert not os.path.exists(certbot_tree)


@pytest.fixture
def fake_systemd(monkeypatch):
    """systemd as far as the retry timer goes: which timers run, and the commands sent to it."""
    from bingo_host import subp
    from bingo_host.facts import systemd

    running, ran = set(), []

    def run(argv, **kw):
        ran.append(argv)
        if argv[0] == "systemd-run":
            running.add(argv[1].removeprefix("--unit=") + ".timer")
        elif argv[:2] == ["systemctl", "stop"]:
            running.discard(argv[2])
        return subp.Result(argv, 0, "", "")

    monkeypatch.setattr(systemd, "booted", lambda: True)
    monkeypatch.setattr(systemd, "states", lambda *units: {
        u: systemd.UnitState(u, "loaded", "active" if u in running else "inactive", "") for u in units})
    monkeypatch.setattr(subp, "run", run)
    return running, ran


def test_no_certificate_yet_retries_by_a_timer_once_and_stops_it_when_one_is_had(fake_systemd, monkeypatch,
                                                                                   caplog):
    """A stack's first launch: the Elastic IP comes after bootstrap, so certbot cannot validate
    yet. One transient timer runs bootstrap again every 15 minutes (Let's Encrypt's 5 failed
    validations an hour), never a second one, and it stops once a certificate is had."""
    running, ran = fake_systemd
    cfg = load_config_text(f"https:\n  domain: {DOMAIN}\n  email: ops@example.com\n")
    monkeypatch.setattr(https_kept, "on_volume", lambda cfg, sub: None)

    def fails(*a, **kw):
        raise https_kept.BingoHostError("the CA could not validate bingo.example.com")

    monkeypatch.setattr(https, "enable", fails)
    caplog.set_level("INFO")
    assert https_kept.at_bootstrap(cfg, None) == 0
    assert https_kept.at_bootstrap(cfg, None) == 0
    starts = [argv for argv in ran if argv[0] == "systemd-run"]
    assert len(starts) == 1 and "--on-unit-active=15min" in starts[0] and starts[0][-1] == "bootstrap", ran
    assert running == {"bingo-host-https-retry.timer"}
    assert "bootstrap runs again every 15min" in caplog.text

    monkeypatch.setattr(https, "enable", lambda *a, **kw: 0)
    assert https_kept.at_bootstrap(cfg, None) == 0
    assert running == set() and ["systemctl", "stop", "bingo-host-https-retry.timer"] in ran
    ran.clear()
    assert https_kept.at_bootstrap(cfg, None) == 0
    assert ran == []  # nothing to stop: nothing sent


def test_a_dry_run_starts_no_timer(fake_systemd):
    running, ran = fake_systemd
    assert "would run bootstrap again" in https_kept.retry_later(dry_run=True)
    assert ran == [] and running == set()
