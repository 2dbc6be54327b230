"""IMDSv2 client against the loopback IMDS test server (never 169.254.169.254)."""

from __future__ import annotations

import time

import pytest

from bingo_host.facts import imds
from bingo_host.facts.imds import IMDS, IMDSError
pytest.register_assert_rewrite("tests.aws_servers")
from tests.aws_servers import IMDSServer, free_port  # noqa: E402



def test_default_endpoint_is_the_real_one_and_env_overrides_it():
    assert imds.endpoint_from_env({}) == "http://169.254.169.254"
    assert imds.endpoint_from_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}) \
        == "http://[fd00:ec2::254]"
    assert imds.endpoint_from_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9/"}) \
        == "http://127.0.0.1:9"


def test_identity_uses_a_token(imds_server, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_server.url)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")  # must be ignored
    ident = IMDS().identity()
    assert ident.instance_id == imds_server.instance_id
    assert ident.region == "eu-west-1" and ident.availability_zone == "eu-west-1a"
    assert imds_server.requests[0] == ("PUT", "/latest/api/token", False)
    gets = [r for r in imds_server.requests if r[0] == "GET"]
    assert gets and all(valid for _, _, valid in gets)
    assert len([r for r in imds_server.requests if r[0] == "PUT"]) == 1  # token reused


def test_server_rejects_requests_without_token(imds_server):
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as exc:
        opener.open(f"{imds_server.url}/latest/meta-data/instance-id", timeout=2)
    assert exc.value.code == 401


def test_expired_token_is_renewed(imds_server):
    client = IMDS(imds_server.url)
    client.token()
    imds_server.tokens.clear()  # the server forgot it: 401, then a fresh token
    assert client.get("meta-data/instance-id") == imds_server.instance_id


def test_not_on_ec2_is_a_clear_error_quickly():
    down = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(IMDSError, match="cannot reach the EC2 instance metadata service at "
                                        + down.replace(".", r"\.")):
        IMDS(down).identity()
    assert time.monotonic() - t0 < 10


def test_imds_going_down(imds_server):
    imds_server.down = True
    with pytest.raises(IMDSError, match="must run on an EC2 instance"):
        IMDS(imds_server.url).identity()
    imds_server.down = False
    assert IMDS(imds_server.url).identity().instance_id == imds_server.instance_id


def test_imds_disabled_and_errors(imds_server, monkeypatch):
    imds_server.token_status = 403
    with pytest.raises(IMDSError, match="IMDS is disabled"):
        IMDS(imds_server.url).identity()
    imds_server.token_status = None
    imds_server.get_status = 500
    with pytest.raises(IMDSError, match="HTTP 500"):
        IMDS(imds_server.url).identity()
    imds_server.get_status = None
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(IMDSError, match="disabled"):
        IMDS(imds_server.url).identity()


def test_identity_document_fallback():
    server = IMDSServer(instance_id="i-0aaaaaaaaaaaaaaaa", region="ap-south-1").start()
    try:
        paths = server._paths

        def without_region():
            p = paths()
            del p["/latest/meta-data/placement/region"]
            return p

        server._paths = without_region
        ident = IMDS(server.url).identity()
        assert (ident.instance_id, ident.region) == ("i-0aaaaaaaaaaaaaaaa", "ap-south-1")
    finally:
        server.stop()
