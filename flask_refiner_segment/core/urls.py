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

#: Hosts for which plain ``http://`` is accepted (local data planes, tests).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_URL = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")
_INTERNAL = (
    "Internal addresses are not allowed (private, loopback, link-local or"
    " reserved); set REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS to allow them."
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

    https is required; http only for ``localhost``, ``127.0.0.1`` and ``::1``.
    Against SSRF, hosts that are private, loopback, link-local, reserved or
    multicast IP literals (and ``*.localhost``) are refused, except those
    three local names. ``allow_private`` lifts both rules, for data planes
    inside the host's network. DNS names are not resolved here: a name that
    points inside the network is not caught (restrict egress for that).
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
    local = host in LOCAL_HOSTS
    if allow_private or local:
        return None
    if parts.scheme == "http":
        return "Use https:// (http:// is only allowed for localhost)."
    if host.endswith(".localhost"):
        return _INTERNAL
    address = ip_literal(host)
    if address is not None and (not address.is_global or address.is_multicast):
        return _INTERNAL
    return None
