"""Which addresses a webhook may be sent to.

An endpoint's host is resolved at delivery time and every address it resolves to must be
allowed (a name that mixes a public and a private address is refused whole); the request then
goes to the address that was checked, never to a second resolution, so DNS rebinding cannot
swap it. Refused unless allowed: loopback, link-local (169.254.0.0/16 holds the cloud metadata
service), private, shared (100.64/10), reserved, multicast and unspecified addresses, and
IPv4-mapped IPv6 forms of these.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """The endpoint resolves to an address the configuration does not allow."""


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check(addresses: Sequence[Address], allow_private: bool, allowed: Sequence[Network]) -> Address:
    """The address to connect to, if each of ``addresses`` is allowed; else AddressRefused."""
    if not addresses:
        raise AddressRefused("the host resolves to no address")
    for address in addresses:
        if allow_private or is_public(address):
            continue
        if not any(address in network for network in allowed):
            raise AddressRefused(f"{address} is not a public address")
    return addresses[0]


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (an address literal: itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen
