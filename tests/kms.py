"""KMS on moto for the signing tests, as a pytest plugin: the `kms` fixture (a client, with the
environment pointing bingo-host's own clients there too) and `new_key`, one signing key per key
spec for the session, shared by every module that signs."""

from __future__ import annotations

import boto3
import pytest

from tests.aws_servers import AWS_ENV_CLEARED, REGION


@pytest.fixture
def kms(moto_server, monkeypatch, tmp_path):
    """A KMS client on moto, the environment pointing bingo-host's own clients there too."""
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    for name, value in (("AWS_CONFIG_FILE", str(empty)), ("AWS_SHARED_CREDENTIALS_FILE", str(empty)),
                        ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION), ("AWS_ENDPOINT_URL_KMS", moto_server.url),
                        ("AWS_EC2_METADATA_DISABLED", "true"), ("NO_PROXY", "127.0.0.1,localhost")):
        monkeypatch.setenv(name, value)
    return boto3.client("kms", region_name=REGION, endpoint_url=moto_server.url)


_KEYS: dict = {}  # (moto's URL, key spec): a key the tests share


def new_key(kms, spec="RSA_2048", fresh=False) -> str:
    """A signing key on this moto server, one per key spec for the session (fresh: a new one)."""
    which = (kms.meta.endpoint_url, spec)
    if fresh or which not in _KEYS:
        arn = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)["KeyMetadata"]["Arn"]
        if fresh:
            return arn
        _KEYS[which] = arn
    return _KEYS[which]
