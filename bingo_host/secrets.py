"""Where the database passwords come from: generated and kept 0600, or read from AWS.

A secret only ever travels in memory, in a 0600/0640 file, or over the MariaDB socket:
never on a command line and never in a log line.
"""

from __future__ import annotations

import json
import os
import re

from .aws_actions import ACTIONS
from .ops import files
from .errors import BingoHostError

# What fetch() can resolve, checked whole at `config check` (not at first fetch): a name, or an
# ARN whose region fetch() reads from it.
_ARN = r"arn:aws(?:-cn|-us-gov|-iso|-iso-[a-z])?:{service}:[a-z]{{2}}(?:-[a-z]+)+-[0-9]:[0-9]{{12}}:"
_SSM_NAME = r"(?=[^:]{1,1011}$)(?:[A-Za-z0-9_.-]+|(?:/[A-Za-z0-9_.-]+){1,15})"
_SSM_REFERENCE = re.compile(
    rf"ssm:(?:{_SSM_NAME}|{_ARN.format(service='ssm')}parameter/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){{0,14}})")
_SM_NAME = r"[A-Za-z0-9/_+=.@!-]{1,512}"  # "!": RDS-managed secrets are named rds!db-ID
_SM_REFERENCE = re.compile(rf"secretsmanager:(?:{_SM_NAME}|{_ARN.format(service='secretsmanager')}"
                           rf"secret:{_SM_NAME})")


def reference_problem(reference: str) -> str | None:
    """Why an ssm:/secretsmanager: reference is malformed, or None if fetch() can use it."""
    if reference.startswith("ssm:") and not _SSM_REFERENCE.fullmatch(reference):
        return ("ssm: must be followed by a parameter name (/path/to/name: letters, digits and "
                "_.-) or ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)")
    if reference.startswith("secretsmanager:") and not _SM_REFERENCE.fullmatch(reference):
        return ("secretsmanager: must be followed by a secret name (letters, digits and /_+=.@!-) or "
                "ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)")
    return None


def is_reference(secret: str) -> bool:
    """True for a config value that names where a secret lives (or that it is generated here)
    rather than being it."""
    return secret == "generate" or secret.startswith(("ssm:", "secretsmanager:"))


def generate() -> str:
    """32 URL-safe characters: nothing an ini file, a shell or SQL quoting could trip on."""
    import secrets as _random  # here, as below: the hooks import this module and never generate

    return _random.token_urlsafe(24)


def read_file(path: str) -> str | None:
    try:
        with open(path) as f:
            value = f.read().strip()
    except FileNotFoundError:
        return None
    return value or None


def store(path: str, value: str) -> None:
    files.write_atomic(path, value + "\n", 0o600, "root", "root")
    os.chmod(os.path.dirname(path), 0o755)


def _fetch_raw(reference: str, region: str | None) -> str:
    import boto3  # here: `bingo-host status` imports secrets, never boto3 (measured: 0.39 s less start-up)
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    service, _, ident = reference.partition(":")
    action = next(a for a in ACTIONS if a.startswith(f"{service}:"))
    if region is None and ident.startswith("arn:"):
        region = ident.split(":")[3]  # arn:aws:SERVICE:REGION:ACCOUNT:...
    client = boto3.client(service, region_name=region,
                          config=Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=10))
    try:
        if service == "ssm":
            return client.get_parameter(Name=ident, WithDecryption=True)["Parameter"]["Value"]
        return client.get_secret_value(SecretId=ident)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        hint = f" (the instance role needs {action})" if "Denied" in code or "Unauthorized" in code else ""
        raise BingoHostError(f"cannot read {reference}: {code}{hint}") from None
    except BotoCoreError as exc:
        raise BingoHostError(f"cannot read {reference}: {exc}") from None


def _one_line(reference: str, key: str, value) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
        # It goes into bingo.ini: a line break would let the secret's value add settings.
        raise BingoHostError(f"{reference}: the secret's {key} must be one non-empty line")
    return value


def _json(raw: str):
    """A JSON secret's data (malformed JSON as {}: it has no key we could use), None if not JSON."""
    if not raw.lstrip().startswith("{"):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def _password(reference: str, raw: str, data) -> str:
    if data is None:
        return _one_line(reference, "value", raw)
    if not isinstance(data, dict) or "password" not in data:
        raise BingoHostError(f"{reference} holds JSON without a \"password\" key")
    return _one_line(reference, "value", data["password"])


def fetch(reference: str, region: str | None = None) -> str:
    """The value behind ssm:NAME or secretsmanager:ID (a JSON secret's "password" key)."""
    raw = _fetch_raw(reference, region)
    return _password(reference, raw, _json(raw))


_SES_SERVER = re.compile(r"email-smtp(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-[0-9])\.amazonaws\.com")


def ses_smtp_password(secret_access_key: str, region: str) -> str:
    """SES's SMTP password for an IAM access key: AWS's documented derivation (a SigV4 signing
    key for date 11111111, service ses, signing "SendRawEmail", version byte 4). CloudFormation
    cannot compute it, so the stack's secret holds the access key and the host derives this."""
    import base64  # here: hashlib loads OpenSSL (~5 ms of a hook's start-up, which never derives)
    import hashlib
    import hmac

    signature = ("AWS4" + secret_access_key).encode()
    for part in ("11111111", region, "ses", "aws4_request", "SendRawEmail"):
        signature = hmac.new(signature, part.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"\x04" + signature).decode()


def fetch_smtp_password(reference: str, region: str | None = None) -> str:
    """Like fetch(), and also an SES SMTP credentials secret as the stacks create it: JSON with
    `secret_access_key` and the `server` (email-smtp.REGION.amazonaws.com) it is for."""
    raw = _fetch_raw(reference, region)
    data = _json(raw)
    if isinstance(data, dict) and "password" not in data and "secret_access_key" in data:
        server = _SES_SERVER.fullmatch(str(data.get("server", "")))
        if not server:
            raise BingoHostError(f"{reference}: an SES access key secret needs \"server\": "
                                 "email-smtp.REGION.amazonaws.com (the region the password is for)")
        key = _one_line(reference, "secret_access_key", data["secret_access_key"])
        return ses_smtp_password(key, server.group(1))
    return _password(reference, raw, data)


def fetch_login(reference: str, region: str | None = None) -> tuple[str, str]:
    """(username, password) from a JSON secret, as RDS keeps a master login."""
    data = _json(_fetch_raw(reference, region))
    if not isinstance(data, dict) or not {"username", "password"} <= data.keys():
        raise BingoHostError(f"{reference} must hold JSON with \"username\" and \"password\" "
                             "(the server's master login)")
    return _one_line(reference, "username", data["username"]), _one_line(reference, "password", data["password"])
