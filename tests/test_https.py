"""`bingo-host enable-https` with the real certbot (installed by bingo-host inside the test host)
against pebble on this machine's 127.0.0.1, validated over HTTP-01 through the test host's nginx.

The tests run in order on the shared bootstrapped host; the module fixture puts the host back to
HTTP only at the end (state file, certificate, renewal timer removed, bootstrap re-run) and checks
the placeholder page is served on port 80 again.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time

import pytest

from bingo_host import https
from bingo_host.config_file import load_config_text
from bingo_host.errors import ConfigError
from tests.conftest import BIN, CONFIG, host_config
from tests.pebble import Pebble

DOMAIN = "bingo.example.com"
NOWHERE = "nowhere.example.com"
SITE = "/etc/nginx/conf.d/music-bingo.conf"
CA_INSIDE = "/root/pebble-ca.pem"
STATE = "/var/lib/bingo-host/https.json"


# -- pure --

@pytest.mark.parametrize("domain,reason", [
    ("10.0.0.1", "not an IP address"), ("_", "fully qualified"), ("localhost", "fully qualified"),
    ("bad_name.example.com", "fully qualified"),
])
def test_domain_must_be_a_host_name(domain, reason):
    with pytest.raises(ConfigError, match=reason) as exc:
        https.validate(load_config_text("{}"), domain, None, True, None, False)
    assert exc.value.exit_code == 2


def test_server_name_must_serve_the_domain():
    cfg = load_config_text("app: {server_name: 'a.example.com *.bingo.example.org'}\n")
    with pytest.raises(ConfigError, match="nginx does not serve b.example.com"):
        https.validate(cfg, "b.example.com", None, True, None, False)
    assert https.validate(cfg, "x.bingo.example.org", None, True, None, False).domain == "x.bingo.example.org"
    assert https.validate(cfg, "A.Example.COM.", None, True, None, False).domain == "a.example.com"
    # '_' answers every name: accepted (the certificate covers the one domain)
    assert https.validate(load_config_text("{}"), DOMAIN, None, True, None, False).domain == DOMAIN


def test_email_server_and_config_rules():
    cfg = load_config_text("https: {email: ops@example.com}\n")
    assert https.validate(cfg, DOMAIN, None, False, None, False).email == "ops@example.com"
    assert https.validate(cfg, DOMAIN, None, True, None, True).server == https.STAGING
    with pytest.raises(ConfigError, match="--no-email"):
        https.validate(load_config_text("{}"), DOMAIN, None, False, None, False)
    with pytest.raises(ConfigError, match="not both"):
        https.validate(cfg, DOMAIN, None, True, "https://acme.example.com/dir", True)
    with pytest.raises(ConfigError, match="https://"):
        https.validate(cfg, DOMAIN, None, True, "http://acme.example.com/dir", False)
    with pytest.raises(ConfigError, match="the config's https.domain is other.example.com"):
        https.validate(load_config_text("https: {domain: other.example.com}\n"), DOMAIN, None, True,
                       None, False)


def test_certbot_argv_is_authenticator_only():
    from bingo_host.facts import platforms

    req = https.Request(DOMAIN, None, "https://127.0.0.1:14000/dir")
    argv = https.certbot_argv(platforms.PLATFORMS["debian12"], req)
    assert argv[:4] == ["/usr/bin/certbot", "certonly", "--authenticator", "nginx"]
    assert "--non-interactive" in argv and "--agree-tos" in argv
    assert "--register-unsafely-without-email" in argv and "--keep-until-expiring" in argv
    assert argv[argv.index("--cert-name") + 1] == DOMAIN and argv[argv.index("-d") + 1] == DOMAIN
    assert argv[argv.index("--deploy-hook") + 1] == "systemctl reload nginx"
    assert "--installer" not in argv and "--nginx" not in argv and "run" not in argv
    al = https.certbot_argv(platforms.PLATFORMS["amzn2023"], https.Request(DOMAIN, "a@b.example", None),
                            force=True)
    assert al[0] == "/opt/bingo-host/certbot/bin/certbot" and "--force-renewal" in al
    assert al[al.index("--email") + 1] == "a@b.example" and "--server" not in al


CERTBOT_DNS_FAILURE = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for nowhere.example.com

Certbot failed to authenticate some domains (authenticator: nginx). The Certificate Authority reported these problems:
  Domain: nowhere.example.com
  Type:   dns
  Detail: DNS problem: NXDOMAIN looking up A for nowhere.example.com - check that a DNS record exists

Hint: The Certificate Authority failed to verify the temporary nginx configuration changes made by Certbot.

Some challenges have failed.
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details.
"""

CERTBOT_RATE_LIMIT = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for bingo.example.com
An unexpected error occurred:
Error creating new order :: too many certificates (5) already issued for this exact set of domains in the last 168 hours: bingo.example.com, retry after 2024-01-05T00:00:00Z: see https://letsencrypt.org/docs/rate-limits/
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details.
"""


def test_certbot_reason_keeps_the_ca_words_only():
    dns = https.certbot_reason(CERTBOT_DNS_FAILURE)
    assert "Type:   dns".split()[0] in dns and "DNS problem: NXDOMAIN" in dns
    assert "Saving debug log" not in dns and "Ask for help" not in dns
    rate = https.certbot_reason(CERTBOT_RATE_LIMIT)
    assert rate.startswith("Error creating new order :: too many certificates")
    assert https.certbot_reason("") == "certbot gave no reason"


# -- in the bootstrapped test host, against pebble --

class HttpsHost:
    def __init__(self, bootstrapped, pebble):
        self.b = bootstrapped
        self.host = bootstrapped.host
        self.pebble = pebble

    def enable(self, *args, dry_run=False):
        return self.host.run([BIN, "enable-https", *(["--dry-run"] if dry_run else []), *args],
                             check=False, timeout=1800, env={"REQUESTS_CA_BUNDLE": CA_INSIDE})

    def sha(self, path):
        return self.host.run(["sh", "-c", f"sha256sum {path} 2>/dev/null || echo absent"]).stdout.split()[0]

    def served_certificate(self, domain=DOMAIN) -> bytes:
        """The certificate nginx serves for domain, verified against pebble's root and the name."""
        ctx = ssl.create_default_context(cadata=self.pebble.root_pem())
        with socket.create_connection(("127.0.0.1", 443), timeout=10) as sock:
            with ctx.wrap_socket(sock, server_hostname=domain) as tls:
                return tls.getpeercert(binary_form=True)

    def listens_443(self, wait: float = 5) -> bool:
        deadline = time.monotonic() + wait
        while True:
            busy = self.host.run(["sh", "-c", "ss -ltn | grep -q ':443 '"], check=False).returncode == 0
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.2)

    def curl(self, *args, want: str | None = None, wait: float = 10):
        """curl -si inside the host; with want, retry until it appears (nginx reloads lazily)."""
        deadline = time.monotonic() + wait
        while True:
            out = self.host.run(["curl", "-s", "-i", "--max-time", "10", *args], check=False).stdout
            if want is None or want in out or time.monotonic() > deadline:
                return out
            time.sleep(0.2)


@pytest.fixture(scope="module")
def tls_host(host_pool, tmp_path_factory):
    bootstrapped = host_pool.bootstrapped()
    pebble = Pebble.start(tmp_path_factory.mktemp("pebble"))
    h = HttpsHost(bootstrapped, pebble)
    h.host.put_file(CA_INSIDE, pebble.ca_cert.read_text())
    try:
        yield h
    finally:
        pebble.stop()
        host = h.host
        host.run(["sh", "-c", f"rm -f {STATE} {CA_INSIDE}; "
                              "systemctl disable --now bingo-host-certbot-renew.timer; "
                              "rm -rf /etc/letsencrypt"], check=False)
        host.put_file(CONFIG, host_config(bootstrapped.volume.device), mode=0o600)
        back = bootstrapped.bingo("bootstrap")
        assert back.returncode == 0, back.stdout + back.stderr
        assert "ssl_certificate" not in host.read_file(SITE)
        page = h.curl("http://127.0.0.1/", want="no release has been deployed yet")
        assert "200 OK" in page and "no release has been deployed yet" in page
        assert not h.listens_443()


def test_bad_input_exits_2_and_changes_nothing(tls_host):
    before = tls_host.sha(SITE)
    for args, message in [
        (["--domain", "10.1.2.3", "--no-email"], "not an IP address"),
        (["--domain", "_", "--no-email"], "fully qualified"),
        (["--domain", DOMAIN], "--no-email"),
    ]:
        r = tls_host.enable(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr
    tls_host.host.put_file("/tmp/named.yaml", host_config(tls_host.b.volume.device,
                                                          app={"server_name": "other.example.com"}))
    r = tls_host.host.run([BIN, "--config", "/tmp/named.yaml", "enable-https", "--domain", DOMAIN,
                           "--no-email"], check=False)
    assert r.returncode == 2 and "nginx does not serve bingo.example.com" in r.stderr
    assert tls_host.sha(SITE) == before
    assert tls_host.sha(STATE) == "absent"


def test_domain_that_cannot_be_validated_fails_cleanly(tls_host):
    """DNS gives no address for the name: certbot fails; nginx serves HTTP as before."""
    host = tls_host.host
    site, nginx_conf = tls_host.sha(SITE), tls_host.sha("/etc/nginx/nginx.conf")
    tls_host.pebble.no_address()
    try:
        r = tls_host.enable("--domain", NOWHERE, "--no-email", "--server", tls_host.pebble.directory)
    finally:
        tls_host.pebble.default_address()
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"certbot could not get a certificate for {NOWHERE}" in r.stderr
    assert "nginx still serves HTTP as before" in r.stderr
    # certbot's (the CA's) reason, without certbot's boilerplate
    assert "Type:   connection" in r.stderr and f'could not resolve URL "http://{NOWHERE}' in r.stderr
    assert "Ask for help" not in r.stderr
    assert "/var/log/letsencrypt/letsencrypt.log" in r.stderr
    assert tls_host.sha(SITE) == site and tls_host.sha("/etc/nginx/nginx.conf") == nginx_conf
    assert tls_host.sha(STATE) == "absent"
    assert not tls_host.listens_443()
    page = tls_host.curl("http://127.0.0.1/", want="no release has been deployed yet")
    assert "200 OK" in page and "no release has been deployed yet" in page
    assert host.run(["test", "-x", "/usr/bin/certbot"], check=False).returncode == 0  # installed by us


def test_a_dry_run_says_each_change_of_the_real_run_and_makes_none(tls_host):
    before = tls_host.sha(SITE)
    r = tls_host.enable("--domain", DOMAIN, "--no-email", "--server", tls_host.pebble.directory,
                        dry_run=True)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert f"would request a certificate for {DOMAIN} from {tls_host.pebble.directory}: " \
           f"/usr/bin/certbot certonly --authenticator nginx" in r.stdout, r.stdout
    assert f"would record {DOMAIN} in {STATE}" in lines, r.stdout
    assert any(line.startswith("would ") and line.endswith(f" {SITE}") for line in lines), r.stdout
    assert f"+    ssl_certificate /etc/letsencrypt/live/{DOMAIN}/fullchain.pem;" in lines, r.stdout
    assert "would enable --now bingo-host-certbot-renew.timer" in lines, r.stdout
    assert lines[-1].startswith("enable-https (dry run): ") and lines[-1].endswith("nothing was changed")
    assert tls_host.sha(SITE) == before and tls_host.sha(STATE) == "absent"
    assert not tls_host.listens_443(wait=0)


def test_enable_https_serves_a_certificate_chaining_to_pebble(tls_host):
    since = tls_host.host.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    r = tls_host.enable("--domain", DOMAIN, "--no-email", "--server", tls_host.pebble.directory)
    assert r.returncode == 0, r.stdout + r.stderr + "\n" + tls_host.pebble.logs()
    assert f"request a certificate for {DOMAIN} from {tls_host.pebble.directory}: " in r.stdout
    assert "enable --now bingo-host-certbot-renew.timer" in r.stdout.splitlines()
    assert r.stdout.splitlines()[-1] == f"HTTPS enabled for {DOMAIN}: https://{DOMAIN}/ (HTTP redirects to it)"
    journal = ""
    for _ in range(50):  # journald takes a record a moment after it was sent
        journal = tls_host.host.run(["journalctl", "--no-pager", "-o", "cat", "-t", "bingo-host",
                                     "--since", since]).stdout
        if f"HTTPS enabled for {DOMAIN}" in journal:
            break
        time.sleep(0.2)
    assert f"request a certificate for {DOMAIN}" in journal and f"HTTPS enabled for {DOMAIN}" in journal
    der = tls_host.served_certificate()  # raises unless it chains to pebble's root and names DOMAIN
    assert der
    site = tls_host.host.read_file(SITE)
    assert f"ssl_certificate /etc/letsencrypt/live/{DOMAIN}/fullchain.pem;" in site
    assert "Managed by bingo-host" in site and "managed by Certbot" not in site
    ti = tls_host.host.testinfra
    assert ti.service("bingo-host-certbot-renew.timer").is_enabled
    assert ti.service("bingo-host-certbot-renew.timer").is_running
    assert not ti.service("certbot.timer").is_enabled  # one renewal path: ours
    renewal = tls_host.host.read_file(f"/etc/letsencrypt/renewal/{DOMAIN}.conf")
    assert "authenticator = nginx" in renewal and "installer = nginx" not in renewal  # never installs
    assert "systemctl reload nginx" in renewal  # any `certbot renew` reloads nginx
    assert f'"domain": "{DOMAIN}"' in tls_host.host.read_file(STATE)


def test_http_redirects_to_https(tls_host):
    page = tls_host.curl("-H", f"Host: {DOMAIN}", "http://127.0.0.1/some/page?x=1", want="HTTP/1.1 301")
    assert page.startswith("HTTP/1.1 301")
    assert f"Location: https://{DOMAIN}/some/page?x=1" in page
    served = tls_host.curl("-k", "--resolve", f"{DOMAIN}:443:127.0.0.1", f"https://{DOMAIN}/", want=" 200")
    assert served.startswith("HTTP/2 200") and "strict-transport-security: max-age=" in served.lower()
    assert "no release has been deployed yet" in served


def test_second_run_does_nothing(tls_host):
    before = (tls_host.sha(SITE), hashlib.sha256(tls_host.served_certificate()).hexdigest(),
              tls_host.sha(STATE))
    r = tls_host.enable("--domain", DOMAIN, "--no-email", "--server", tls_host.pebble.directory)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"HTTPS is already enabled for {DOMAIN}: nothing to do" in r.stdout
    assert "request a certificate" not in r.stdout
    after = (tls_host.sha(SITE), hashlib.sha256(tls_host.served_certificate()).hexdigest(),
             tls_host.sha(STATE))
    assert after == before


def test_bootstrap_keeps_https_with_the_same_certificate(tls_host):
    fingerprint = hashlib.sha256(tls_host.served_certificate()).hexdigest()
    r = tls_host.b.bingo("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "already converged, nothing changed" in r.stdout
    assert hashlib.sha256(tls_host.served_certificate()).hexdigest() == fingerprint
    assert "ssl_certificate" in tls_host.host.read_file(SITE)


def test_status_reports_the_certificate(tls_host):
    import json

    from tests.status_schema import assert_valid

    r = tls_host.b.bingo("status", "--json")
    report = json.loads(r.stdout)
    assert_valid(report)
    assert r.returncode == 0, report["problems"]
    cert = report["certificate"]
    assert cert["domain"] == DOMAIN and cert["days_left"] > 1
    renew = next(s for s in report["services"] if s["name"] == "renew-timer")
    assert renew["required"] and renew["active"] == "active" and renew["next_run"]
    http = {h["kind"]: h for h in report["http"]}
    assert http["redirect"]["ok"] and http["static"]["status"] == 200
    assert http["static"]["url"] == f"https://{DOMAIN}/"
