"""Believe X-Forwarded-Proto / -Host / -For and X-Request-ID only from the proxies the operator
trusts.

Behind a TLS-terminating proxy (nginx on the same host, see docs/deploy/nginx.md) the server sees
``http://127.0.0.1:5000`` while clients use ``https://registry.example.com``. Anything that builds
a URL from the request (``request.url``, ``base_url``, a token realm) must name the public one, so
this middleware rewrites the ASGI scope from the proxy's headers: ``scheme``, the Host header and
``server``, and ``client``; a proxy's X-Request-ID becomes the request's id (in the logs and
the response). Anyone can send those headers, so they are applied only when the
direct peer is a trusted proxy; from anyone else they are ignored, and so is any value that does
not parse (a wrong guess is worse than the proxy's own view).

The RFC 7239 ``Forwarded`` header is not read: nginx and the classic layouts send X-Forwarded-*.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from moorage.api.request_state import (
    CLIENT_UNKNOWN_KEY,
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    acceptable_request_id,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_PROTO = b"x-forwarded-proto"
_HOST = b"x-forwarded-host"
_FOR = b"x-forwarded-for"
# Headers only a proxy adds: a request from a trusted peer with one of them was relayed, even
# when no X-Forwarded-For names its client. (One with none is the peer's own, e.g. a Prometheus
# on the proxy's host.)
_RELAYED = frozenset((_PROTO, _HOST, _FOR, b"x-forwarded-port", b"x-real-ip", b"forwarded", b"via"))

# A DNS name or dotted IPv4 (RFC 3986 reg-name, restricted to what a registry host can be),
# or a bracketed IPv6 literal; then an optional port.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_PORT = re.compile(
    rf"(?P<name>{_LABEL}(?:\.{_LABEL})*\.?|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{{1,5}}))?"
)
_MAX_HOST_LENGTH = 255
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    """Networks from addresses (``127.0.0.1``, ``::1``) and CIDRs (``10.0.0.0/8``).

    Raises ``ValueError`` naming the first entry that is neither.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"proxy.trusted: {entry!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; trust rules name them as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    """Whether ``peer`` (an address as text; None for a Unix socket) is in ``trusted``."""
    address = _address(peer) if peer is not None else None
    return address is not None and any(address in network for network in trusted)


def _values(header_values: Sequence[str]) -> list[str]:
    """The comma-separated items of every line of a header, in order."""
    return [item.strip() for value in header_values for item in value.split(",")]


def forwarded_proto(header_values: Sequence[str]) -> str | None:
    """``http`` or ``https`` from the first X-Forwarded-Proto value; None if absent or other."""
    values = _values(header_values)
    proto = values[0].lower() if values else ""
    return proto if proto in ("http", "https") else None


@dataclass(frozen=True)
class HostPort:
    """A validated ``host[:port]``; ``header`` is the value for a Host header."""

    host: str
    port: int | None

    @property
    def header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def forwarded_host(header_values: Sequence[str]) -> HostPort | None:
    """The first X-Forwarded-Host value if it is a well-formed ``host[:port]``, else None."""
    values = _values(header_values)
    if not values or len(values[0]) > _MAX_HOST_LENGTH:
        return None
    match = _HOST_PORT.fullmatch(values[0])
    if match is None:
        return None
    port = int(match["port"]) if match["port"] is not None else None
    if port is not None and not 0 < port <= 65535:
        return None
    if match["ipv6"] is not None:
        try:
            return HostPort(str(ipaddress.IPv6Address(match["ipv6"])), port)
        except ValueError:
            return None
    return HostPort(match["name"].lower(), port)


def forwarded_client(header_values: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The rightmost X-Forwarded-For address that is not a trusted proxy.

    Each proxy appends the peer it saw, so entries left of the last untrusted one were written
    by whoever that was and prove nothing. When every entry is a trusted proxy, the leftmost is
    the client. None when the header is absent or an entry we would have to step over is not an
    address.
    """
    values = _values(header_values)
    client: Address | None = None
    for item in reversed(values):
        address = _address(item)
        if address is None:
            return None
        client = address
        if not any(address in network for network in trusted):
            break
    return None if client is None else str(client)


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key == name]


class TrustedProxyHeaders:
    """ASGI middleware applying X-Forwarded-Proto, -Host and -For from trusted peers only.

    ``trusted`` holds addresses or CIDR networks (``parse_trusted`` raises on anything else).
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[str]) -> None:
        self.app = app
        self.trusted = parse_trusted(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and is_trusted(
            client[0] if client else None, self.trusted
        ):
            scope = self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        scope = dict(scope)

        proto = forwarded_proto(_header_values(headers, _PROTO))
        if proto is not None:
            scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")

        host = forwarded_host(_header_values(headers, _HOST))
        if host is not None:
            headers = [(k, v) for k, v in headers if k != b"host"]
            headers.append((b"host", host.header.encode("latin-1")))
            scope["headers"] = headers
            port = host.port if host.port is not None else _DEFAULT_PORTS.get(scope["scheme"], 80)
            scope["server"] = (host.host, port)

        client = forwarded_client(_header_values(headers, _FOR), self.trusted)
        if client is not None:
            # The original port belongs to the proxy's connection, not the client's.
            scope["client"] = (client, 0)
        elif any(key in _RELAYED for key, _ in headers):
            # Relayed for someone the proxy did not name (or named unreadably): the client
            # stays the proxy's address, but nothing may treat it as the caller's.
            scope[CLIENT_UNKNOWN_KEY] = True

        request_ids = _header_values(headers, REQUEST_ID_HEADER)
        request_id = acceptable_request_id(request_ids[0].strip()) if request_ids else None
        if request_id is not None:
            scope[REQUEST_ID_KEY] = request_id
        return scope
