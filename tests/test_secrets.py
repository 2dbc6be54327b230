"""database.password (and smtp.password) from SSM Parameter Store and Secrets Manager (moto_server
on 127.0.0.1).

The secret must reach bingo.ini (0640) and MariaDB, and appear in no log line and no process
command line while bootstrap runs.
"""

from __future__ import annotations

import json

import boto3
import pytest

from tests.conftest import CONFIG, host_config

REGION = "eu-west-1"

CMDLINE_WATCH = r"""
# Record every process command line seen while bootstrap runs (the secret must not be in any).
while [ ! -e /tmp/stop-watch ]; do
    cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' >> /tmp/cmdlines
    echo >> /tmp/cmdlines
done
"""


def aws_env(moto):
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_SSM": moto.url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto.url,
            "AWS_ENDPOINT_URL": moto.url,  # anything else stays on loopback too
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost"}


def client(moto, service):
    return boto3.client(service, region_name=REGION, endpoint_url=moto.url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def restore_generated_password(bootstrapped):
    yield
    bootstrapped.host.put_file(CONFIG, host_config(bootstrapped.volume.device), mode=0o600)
    back = bootstrapped.bingo("bootstrap")
    assert back.returncode == 0, back.stdout + back.stderr


def bootstrap_with(bootstrapped, moto, password_source, secret):
    host = bootstrapped.host
    host.put_file(CONFIG, host_config(bootstrapped.volume.device, database={"password": password_source}),
                  mode=0o600)
    host.run(["rm", "-f", "/tmp/stop-watch", "/tmp/cmdlines"])
    watch = host.popen(["sh", "-c", CMDLINE_WATCH])
    try:
        result = host.run(["/usr/local/bin/bingo-host", "-v", "bootstrap"], env=aws_env(moto),
                          check=False, timeout=600)
    finally:
        host.run(["touch", "/tmp/stop-watch"])
        watch.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    cmdlines = host.read_file("/tmp/cmdlines")
    assert "bootstrap" in cmdlines  # the watcher did see bootstrap running
    assert secret not in cmdlines
    ti = host.testinfra
    ini = ti.file("/var/www/music-bingo/shared/bingo.ini")
    assert ini.mode == 0o640 and f"passwd = {secret}\n" in ini.content_string
    login = host.run(["mariadb", "-u", "bingoapp", "-N", "-B", "bingo", "-e", "SELECT 42"],
                     env={"MYSQL_PWD": secret}, check=False)
    assert login.stdout.strip() == "42", login.stderr
    assert secret not in ti.run("journalctl --no-pager -o cat").stdout
    assert "update /var/www/music-bingo/shared/bingo.ini" in result.stdout
    assert "set the app user's password" in result.stdout


def test_password_from_ssm_parameter(bootstrapped, moto_server, restore_generated_password):
    secret = "SsmSecret-4e9f2c7a8b1d"
    client(moto_server, "ssm").put_parameter(Name="/bingo/db-password", Value=secret,
                                            Type="SecureString", Overwrite=True)
    bootstrap_with(bootstrapped, moto_server, "ssm:/bingo/db-password", secret)


def test_password_from_secrets_manager_json(bootstrapped, moto_server, restore_generated_password):
    secret = "SmSecret-0b7d3a9c5e2f"
    arn = client(moto_server, "secretsmanager").create_secret(
        Name="bingo-db", SecretString=json.dumps({"username": "bingoapp", "password": secret}))["ARN"]
    bootstrap_with(bootstrapped, moto_server, f"secretsmanager:{arn}", secret)


def test_unreadable_secret_fails_clearly_and_changes_nothing(bootstrapped, moto_server,
                                                             restore_generated_password):
    host = bootstrapped.host
    before = host.testinfra.file("/var/www/music-bingo/shared/bingo.ini").sha256sum
    host.put_file(CONFIG, host_config(bootstrapped.volume.device,
                                      database={"password": "ssm:/bingo/missing"}), mode=0o600)
    result = host.run(["/usr/local/bin/bingo-host", "bootstrap"], env=aws_env(moto_server),
                      check=False, timeout=600)
    assert result.returncode == 1
    assert "secrets" in result.stdout and "ParameterNotFound" in result.stdout
    assert host.testinfra.file("/var/www/music-bingo/shared/bingo.ini").sha256sum == before


def test_secret_key_shared_from_secrets_manager(bootstrapped, moto_server, restore_generated_password):
    """HA instances read one secret_key (a plain generated secret), so tokens signed by one
    instance are accepted by the others; it reaches bingo.ini and no log."""
    host = bootstrapped.host
    key = "SharedKey7f3a9e1c5b2d8a4e6f0c9b3d"
    arn = client(moto_server, "secretsmanager").create_secret(Name="bingo-app-secret-key",
                                                             SecretString=key)["ARN"]
    host.put_file(CONFIG, host_config(bootstrapped.volume.device,
                                      musicbingo={"secret_key": f"secretsmanager:{arn}"}), mode=0o600)
    result = host.run(["/usr/local/bin/bingo-host", "-v", "bootstrap"], env=aws_env(moto_server),
                      check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"secret_key from secretsmanager:{arn}" in result.stdout
    assert key not in result.stdout + result.stderr
    ini = host.testinfra.file("/var/www/music-bingo/shared/bingo.ini").content_string
    assert f"secret_key = {key}\n" in ini
    assert key not in host.testinfra.run("journalctl --no-pager -o cat").stdout


# -- the SMTP password (no test host needed: the secrets step and bingo.ini's rendering) --

@pytest.fixture
def moto_env(moto_server, monkeypatch):
    for name, value in aws_env(moto_server).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


def smtp_context(reference: str):
    from bingo_host.config_file import load_config_text
    from bingo_host.context import Context
    from bingo_host.facts.host import HostFacts
    from bingo_host.facts.platforms import PLATFORMS
    from bingo_host.resolve import resolve

    cfg = load_config_text(f"""
database: {{host: db.example.com, password: 'Literal-Db-Password-1'}}
musicbingo: {{secret_key: 'ssm:/bingo/secret-key'}}
smtp: {{server: email-smtp.eu-west-1.amazonaws.com, sender: bingo@example.com,
        username: AKIAEXAMPLE123, password: '{reference}'}}
""")
    platform, facts = PLATFORMS["amzn2023"], HostFacts(512 * 1024**2, 2)
    return Context(cfg=resolve(cfg, platform, facts), platform=platform, facts=facts,
                   dry_run=True)


def test_smtp_password_from_secrets_manager_reaches_bingo_ini_escaped(moto_env):
    """The SES SMTP credentials secret (JSON with a "password" key) is fetched like the database
    password, and a '%' in it is written '%%' so that the app reads it back unchanged."""
    import configparser

    from bingo_host.converge.steps import secrets as step

    client(moto_env, "ssm").put_parameter(Name="/bingo/secret-key", Value="Key-0123456789",
                                          Type="SecureString", Overwrite=True)
    secret = "BSmtp+Pass/word%42="
    arn = client(moto_env, "secretsmanager").create_secret(
        Name="bingo-smtp", SecretString=json.dumps({"username": "AKIAEXAMPLE123",
                                                    "password": secret}))["ARN"]
    ctx = smtp_context(f"secretsmanager:{arn}")
    summary = step.converge(ctx)
    assert f"SMTP password from secretsmanager:{arn}" in summary and secret not in summary
    ini = ctx.managed("bingo.ini")
    assert ini.secret and "password = BSmtp+Pass/word%%42=\n" in ini.content
    parsed = configparser.ConfigParser()
    parsed.read_string(ini.content)
    assert parsed["smtp"]["password"] == secret


def test_smtp_password_of_several_lines_is_refused(moto_env):
    from bingo_host.converge.steps import secrets as step
    from bingo_host.errors import BingoHostError

    client(moto_env, "ssm").put_parameter(Name="/bingo/secret-key", Value="Key-0123456789",
                                          Type="SecureString", Overwrite=True)
    client(moto_env, "ssm").put_parameter(Name="/bingo/smtp", Value="pw\n[database]\nhost = x",
                                          Type="SecureString", Overwrite=True)
    with pytest.raises(BingoHostError, match="ssm:/bingo/smtp: the secret.s value must be one non-empty line"):
        step.converge(smtp_context("ssm:/bingo/smtp"))


def test_ses_smtp_password_is_the_sigv4_derivation_botocore_computes():
    """Checked against botocore's own SigV4 signer (an independent implementation): the SES
    password is its signature of "SendRawEmail" for date 11111111 and service ses, after a
    version byte 4."""
    import base64
    from types import SimpleNamespace

    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials

    from bingo_host.secrets import ses_smtp_password

    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    for region in ("eu-west-1", "us-east-1"):
        signer = SigV4Auth(Credentials("AKIAIOSFODNN7EXAMPLE", key), "ses", region)
        request = SimpleNamespace(context={"timestamp": "11111111T000000Z"})
        expected = bytes.fromhex(signer.signature("SendRawEmail", request))
        password = base64.b64decode(ses_smtp_password(key, region))
        assert password == b"\x04" + expected
    assert ses_smtp_password(key, "eu-west-1") != ses_smtp_password(key, "us-east-1")


def test_smtp_password_derived_from_the_stacks_ses_access_key_secret(moto_env):
    """The stacks' SmtpSecret holds the IAM access key (CloudFormation cannot compute the SMTP
    password): the host derives the password for the secret's server's region, and a secret
    without a usable server is refused naming what is missing."""
    import configparser

    from bingo_host.converge.steps import secrets as step
    from bingo_host.errors import BingoHostError
    from bingo_host.secrets import ses_smtp_password

    client(moto_env, "ssm").put_parameter(Name="/bingo/secret-key", Value="Key-0123456789",
                                          Type="SecureString", Overwrite=True)
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    sm = client(moto_env, "secretsmanager")
    arn = sm.create_secret(Name="bingo-ses", SecretString=json.dumps(
        {"username": "AKIAEXAMPLE123", "secret_access_key": key,
         "server": "email-smtp.eu-west-1.amazonaws.com"}))["ARN"]
    ctx = smtp_context(f"secretsmanager:{arn}")
    step.converge(ctx)
    parsed = configparser.ConfigParser()
    parsed.read_string(ctx.managed("bingo.ini").content)
    assert parsed["smtp"]["password"] == ses_smtp_password(key, "eu-west-1")
    assert key not in ctx.managed("bingo.ini").content
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(
        {"username": "AKIAEXAMPLE123", "secret_access_key": key, "server": "smtp.example.com"}))
    with pytest.raises(BingoHostError, match="needs \"server\": email-smtp.REGION"):
        step.converge(smtp_context(f"secretsmanager:{arn}"))
