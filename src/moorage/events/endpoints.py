"""A webhook endpoint as the delivery worker uses it (built from ``events.endpoints``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from moorage.auth.policy import matches_any
from moorage.events.ssrf import Network


@dataclass(frozen=True, slots=True)
class Endpoint:
    key: str  # its deliveries' name in the outbox
    url: str
    repositories: tuple[str, ...] = ("*",)  # repository globs (the policy's syntax)
    types: frozenset[str] = frozenset()  # empty: every type
    secret: str | None = None
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    allow_networks: tuple[Network, ...] = ()

    def wants(self, event_type: str, repository: str) -> bool:
        return (not self.types or event_type in self.types) and matches_any(
            self.repositories, repository
        )


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
