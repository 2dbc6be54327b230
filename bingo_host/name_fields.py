"""The checks of names on the network: host names and addresses (nginx's server_name, the
database and mail servers), a certificate's domain, an e-mail address. RFC 1123 names, IPv4
dotted quads and IPv6 addresses without a scope id: nothing that could carry a directive into
nginx or an option onto certbot's command line."""

from __future__ import annotations

import ipaddress
import re

from .errors import ConfigError
from .fields import NotAllowed, shown, string

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _is_ip(value: str) -> bool:
    """An IPv4 dotted quad or an IPv6 address without a scope id ('%eth0': anything may follow
    the '%', a ';' and an nginx directive too)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return getattr(address, "scope_id", None) is None


def _is_hostname(value: str) -> bool:
    """RFC 1123 letters, digits and '-' labels; an all-digit last label would be a mistyped
    address such as 10.0.0 or 300.1.1.1, not a name (RFC 3696 section 2)."""
    return bool(HOSTNAME.fullmatch(value)) and not value.rpartition(".")[2].isdigit()


def domain_name(value, path) -> str:
    """A DNS name that can carry a certificate: not an IP address, not '_'."""
    value = string(value, path, domain_name.allowed).rstrip(".").lower()
    if _is_ip(value):
        raise ConfigError(path, f"must be a host name, not an IP address (got {shown(value)})")
    if not _is_hostname(value) or "." not in value:
        raise NotAllowed(path, domain_name.allowed, value)
    return value


domain_name.allowed = ("a fully qualified host name (letters, digits, '-' and dots), not an IP "
                       "address")


def server_names(value, path) -> tuple[str, ...]:
    """nginx server_name: '_' or host names, as a list or a space-separated string."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise NotAllowed(path, server_names.allowed, value)
    names = []
    for i, item in enumerate(items):
        item = string(item, f"{path}[{i}]") if not isinstance(value, str) else item
        bare = item[2:] if item.startswith("*.") else item
        if item != "_" and not (_is_hostname(bare) or _is_ip(item)):
            raise ConfigError(path, f"{shown(item)} is not '_' or a host name")
        names.append(item.lower())
    if "_" in names and len(names) > 1:
        raise ConfigError(path, f"'_' must stand alone (got {shown(' '.join(names))})")
    return tuple(names)


server_names.allowed = "'_' (any name) or host names, as a list or separated by spaces"


def database_host(value, path) -> str:
    value = string(value, path, database_host.allowed)
    if not (_is_hostname(value) or _is_ip(value)):
        raise NotAllowed(path, database_host.allowed, value)
    return value


database_host.allowed = "a host name or an IP address (no IPv6 scope id)"


_LOCAL_PART = re.compile(r"(?![.-])(?!.*\.\.)[A-Za-z0-9._+-]{1,64}(?<!\.)")


def email(value, path) -> str:
    """It reaches certbot's command line: no leading '-' (an option), letters, digits and ._+-
    before the @, a fully qualified host name after it."""
    value = string(value, path, email.allowed)
    local, _, domain = value.partition("@")
    if not _LOCAL_PART.fullmatch(local) or not _is_hostname(domain) or "." not in domain:
        raise NotAllowed(path, email.allowed, value)
    return value


email.allowed = ("an e-mail address such as admin@example.com (letters, digits and ._+- before "
                 "the @, not starting with '-' or '.')")
