"""Where deliveries may go: Segment's regions, custom data planes, and the
policy that keeps a custom data-plane URL off the app server's own network.

Pure: no Flask, database or network (DNS names are not resolved here).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

US_HOST = "https://api.segment.io"
EU_HOST = "https://events.eu1.segmentapis.com"
#: Segment's own data planes.
SEGMENT_HOSTS = frozenset({US_HOST, EU_HOST})

MAX_URL = 2048
#: Special-purpose ranges refused on top of what ``is_global`` says (older
#: Pythons know less of them): NAT64 (RFC 6052, RFC 8215), which embed an IPv4
#: address in an IPv6 one, and the IETF protocol assignments block.
SPECIAL = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv4Network("192.0.0.0/24"),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")
_INTERNAL = (
    "Internal addresses are not allowed (loopback, private, link-local, NAT64 or"
    " another special-purpose range); set REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS to"
    " allow them."
)
_HTTP = (
    "Use https:// (http:// only for a data plane inside your network, with"
    " REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS)."
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve_api_host(region: str, custom_url: str | None = None) -> str:
    """The base URL for ``"us"``, ``"eu"`` or ``"custom"`` (a data-plane URL,
    trailing ``/`` stripped). Raises :exc:`ValueError` for anything else."""
    if region == "us":
        return US_HOST
    if region == "eu":
        return EU_HOST
    if region == "custom":
        url = (custom_url or "").strip().rstrip("/")
        if not url:
            raise ValueError("A custom data-plane URL is required for region 'custom'.")
        return url
    raise ValueError(f"Unknown region {region!r}: use 'us', 'eu' or 'custom'.")


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` names literally, or ``None`` for a DNS name.

    Legacy IPv4 spellings that resolvers accept (``127.1``, ``0x7f.0.0.1``,
    ``2130706433``) count as literals too.
    """
    try:
        address: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.match(host):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def check_data_plane_url(url: str, *, allow_private: bool = False) -> str | None:
    """Why ``url`` can't be a custom data plane, or ``None`` when it can.

    https is required, and against SSRF a host that is ``localhost`` (or
    ``*.localhost``) or an IP literal outside the public internet is refused:
    loopback, private, link-local, multicast, reserved, NAT64 and every other
    special-purpose range :mod:`ipaddress` knows, also when written as an
    IPv4-mapped, 6to4 or Teredo address or in a legacy IPv4 spelling.
    ``allow_private`` (the host's explicit opt-in) lifts both rules, for data
    planes inside the host's network. DNS names are not resolved here: a name
    that points inside the network is not caught (restrict egress for that).
    """
    if not url:
        return "Enter the data-plane URL for a custom region."
    if len(url) > MAX_URL:
        return f"The URL is longer than {MAX_URL} characters."
    if _CONTROL.search(url) or any(ch.isspace() for ch in url):
        return "The URL must not contain spaces or control characters."
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "Enter a valid URL."
    if parts.scheme not in ("http", "https") or not host:
        return "Enter a URL starting with https://."
    if parts.username is not None or parts.password is not None:
        return "The URL must not contain credentials."
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "The URL must not contain a query or fragment."
    if allow_private:
        return None
    if parts.scheme == "http":
        return _HTTP
    if host == "localhost" or host.endswith(".localhost"):
        return _INTERNAL
    address = ip_literal(host)
    if address is not None and not is_public(address):
        return _INTERNAL
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` (and every IPv4 address it embeds) is on the public
    internet: not special-purpose in any way :mod:`ipaddress` knows."""
    if any(address in net for net in SPECIAL):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if not all(is_public(v4) for v4 in embedded if v4 is not None):
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
    )
