"""The EC2 instance metadata service, version 2 only (Amazon Linux 2023 turns IMDSv1 off).

Plain urllib, not boto3: it is a handful of requests, and ``status`` must stay cheap. Like
botocore, the endpoint can be overridden with ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (or the
IPv6 endpoint chosen with ``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6``), and
``AWS_EC2_METADATA_DISABLED=true`` turns it off. Proxies are never used for it: the service is
link-local, and a proxy would only leak the token.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..errors import BingoHostError
from ..layout import IMDS_ADDRESS as ADDRESS, IMDS_ADDRESS_IPV6 as ADDRESS_IPV6

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = f"http://{ADDRESS}"
DEFAULT_ENDPOINT_IPV6 = f"http://[{ADDRESS_IPV6}]"
ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
ENDPOINT_MODE_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"
DISABLED_ENV = "AWS_EC2_METADATA_DISABLED"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL = 21600


class IMDSError(BingoHostError):
    """The instance metadata service could not be asked (not on EC2, disabled, or failing)."""


@dataclass(frozen=True)
class Identity:
    instance_id: str
    region: str
    availability_zone: str | None = None


def endpoint_from_env(environ=None) -> str:
    """The IMDS base URL, resolved as botocore resolves it."""
    environ = os.environ if environ is None else environ
    url = environ.get(ENDPOINT_ENV)
    if url:
        return url.rstrip("/")
    if environ.get(ENDPOINT_MODE_ENV, "").lower() == "ipv6":
        return DEFAULT_ENDPOINT_IPV6
    return DEFAULT_ENDPOINT


class IMDS:
    """A small IMDSv2 client: one session token, short timeouts, one retry on network errors."""

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0, attempts: int = 2):
        self.endpoint = (endpoint or endpoint_from_env()).rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self._token: str | None = None
        # No ProxyHandler entries: never send the metadata request through http_proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- transport --

    def _request(self, method: str, path: str, headers: dict[str, str]) -> str:
        url = f"{self.endpoint}{path}"
        last: Exception | None = None
        for attempt in range(self.attempts):
            req = urllib.request.Request(url, method=method, headers=headers,
                                         data=b"" if method == "PUT" else None)
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    return resp.read().decode()
            except urllib.error.HTTPError as exc:
                # An HTTP answer is final except for the service's own transient errors.
                if exc.code >= 500 and attempt + 1 < self.attempts:
                    last = exc
                    continue
                raise
            except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
                last = exc
                log.debug("IMDS %s %s failed (attempt %d): %s", method, path, attempt + 1, exc)
        reason = getattr(last, "reason", last)
        raise IMDSError(
            f"cannot reach the EC2 instance metadata service at {self.endpoint} ({reason}): "
            "bingo-host snapshot must run on an EC2 instance with IMDSv2 enabled "
            "(instance metadata options: http-endpoint enabled, http-tokens required or optional)")

    def token(self) -> str:
        if os.environ.get(DISABLED_ENV, "").lower() == "true":
            raise IMDSError(f"the instance metadata service is disabled ({DISABLED_ENV}=true)")
        if self._token is None:
            try:
                self._token = self._request("PUT", "/latest/api/token",
                                            {TOKEN_TTL_HEADER: str(TOKEN_TTL)}).strip()
            except urllib.error.HTTPError as exc:
                if exc.code == 403:
                    raise IMDSError(
                        f"the instance metadata service at {self.endpoint} refused a token "
                        "(HTTP 403): IMDS is disabled for this instance") from None
                raise IMDSError(f"the instance metadata service at {self.endpoint} answered "
                                f"HTTP {exc.code} to the IMDSv2 token request") from None
            if not self._token:
                raise IMDSError(f"the instance metadata service at {self.endpoint} "
                                "returned an empty IMDSv2 token")
        return self._token

    def get(self, path: str) -> str:
        """GET /latest/<path> with the session token; a 401 (expired token) is retried once."""
        for fresh in (False, True):
            if fresh:
                self._token = None
            try:
                return self._request("GET", f"/latest/{path.lstrip('/')}",
                                     {TOKEN_HEADER: self.token()})
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and not fresh:
                    continue
                raise IMDSError(f"the instance metadata service answered HTTP {exc.code} "
                                f"for {path}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- values --

    def identity(self) -> Identity:
        """This instance's id and region (and availability zone when known)."""
        instance_id = self.get("meta-data/instance-id").strip()
        try:
            region = self.get("meta-data/placement/region").strip()
            az = self.get("meta-data/placement/availability-zone").strip() or None
        except IMDSError:
            # Older metadata versions lack placement/region: the identity document has both.
            doc = json.loads(self.get("dynamic/instance-identity/document"))
            region, az = doc["region"], doc.get("availabilityZone")
        if not instance_id.startswith("i-") or not region:
            raise IMDSError(f"unexpected instance metadata: instance-id={instance_id!r}, "
                            f"region={region!r}")
        return Identity(instance_id, region, az)


def identity(endpoint: str | None = None) -> Identity:
    return IMDS(endpoint).identity()
