"""What the delivery worker and `moorage events` need of the outbox (implemented by
:class:`moorage.metadata.outbox.SqlEventStore`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DueDelivery:
    seq: int
    event_id: str
    body: bytes
    attempts: int  # made so far


@dataclass(frozen=True, slots=True)
class Delivery:
    endpoint: str
    state: str  # pending, delivered, failed
    attempts: int
    last_error: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    type: str
    repository: str
    created_at: float
    deliveries: tuple[Delivery, ...]


class EventStore(Protocol):
    def dispatch(self, wants: Callable[[str, str], Sequence[str]], limit: int = 500) -> int:
        """Create the deliveries of new events; returns how many events it handled."""

    def due(self, endpoint: str, now: float, limit: int) -> list[DueDelivery]:
        """Pending deliveries to ``endpoint`` due by ``now``, oldest event first."""

    def next_due(self, endpoint: str) -> float | None:
        """When ``endpoint``'s next pending delivery is due, or None if it has none."""

    def settle(self, seq: int, endpoint: str, error: str | None, retry_at: float | None) -> None:
        """Record an attempt: delivered (no error), retry at ``retry_at``, or given up. A retry
        holds the endpoint's other pending deliveries back until ``retry_at`` as well."""

    def backlog(self) -> int: ...

    def list(self, failed_only: bool = False, limit: int = 100) -> list[EventRecord]: ...

    def redeliver(self, event_id: str | None) -> int: ...

    def prune(self, before: float) -> int: ...
