"""The backup bucket on moto, as a pytest plugin: `s3`, an S3 client of bingo-host's own
(backup/store.py) with the environment pointing there and the bucket bingo-backups made."""

from __future__ import annotations

import pytest

from bingo_host.backup import store
from tests.aws_servers import REGION


@pytest.fixture
def s3(monkeypatch, moto_server, tmp_path):
    moto_server.reset()
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": moto_server.url,
                        "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
                        "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    client = store.client()
    client.create_bucket(Bucket="bingo-backups", CreateBucketConfiguration={"LocationConstraint": REGION})
    return client
