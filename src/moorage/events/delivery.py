"""Posting events to their endpoints: at least once, each endpoint on its own.

Each endpoint's deliveries go out oldest first, one at a time, in a task of its own: an
endpoint that times out or refuses holds up nobody else, and pushes never wait for any of them
(they only wrote the outbox row). A failed attempt is retried after ``backoff_initial`` seconds,
doubling up to ``backoff_max``, ``max_attempts`` times in all; the endpoint's other deliveries
wait until then too (its first failing event is the probe: see EventStore.settle), so a dead
endpoint costs one attempt per backoff step, not one per event, and `moorage events
redeliver` (which makes deliveries due now) ends the wait. Delivery means a 2xx answer; a
redirect is a failure, never followed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import httpx

from moorage.events import ssrf
from moorage.events.cloudevents import CONTENT_TYPE
from moorage.events.endpoints import Endpoint
from moorage.events.port import DueDelivery, EventStore
from moorage.events.signature import HEADER, sign

log = logging.getLogger("moorage.events")

BATCH = 50
USER_AGENT = "moorage-webhooks/1"


class DeliveryFailed(Exception):
    """An attempt failed. ``outcome`` is the metrics label: ``failed`` or ``blocked`` (the SSRF
    guard refused the address)."""

    def __init__(self, message: str, outcome: str = "failed") -> None:
        super().__init__(message)
        self.outcome = outcome


def _client() -> httpx.AsyncClient:
    # Not from the environment: a proxy would be connected to instead of the address the guard
    # checked.
    return httpx.AsyncClient(trust_env=False, follow_redirects=False)


class Deliverer:
    def __init__(
        self,
        store: EventStore,
        endpoints: Sequence[Endpoint],
        allow_private: bool = False,
        backoff_initial: float = 2.0,
        backoff_max: float = 3600.0,
        max_attempts: int = 15,
        count: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.endpoints = tuple(endpoints)
        self.allow_private = allow_private
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.max_attempts = max_attempts
        self.count = count
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._client = _client()

    def wants(self, event_type: str, repository: str) -> list[str]:
        return [e.key for e in self.endpoints if e.wants(event_type, repository)]

    async def tick(self) -> None:
        """Dispatch new events, and start each endpoint's delivery task unless it runs."""
        await asyncio.to_thread(self.store.dispatch, self.wants)
        for endpoint in self.endpoints:
            running = self._tasks.get(endpoint.key)
            if running is None or running.done():
                self._tasks[endpoint.key] = asyncio.create_task(self._drain(endpoint))

    async def stop(self) -> None:
        """Cancel the endpoints' tasks (an attempt cut short is retried: at least once)."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        client, self._client = self._client, _client()
        await client.aclose()

    async def _drain(self, endpoint: Endpoint) -> None:
        try:
            while True:
                due = await asyncio.to_thread(self.store.due, endpoint.key, self.clock(), BATCH)
                for delivery in due:
                    if not await self._attempt(endpoint, delivery):
                        return
                if len(due) < BATCH:
                    return
        except Exception:  # the database; the next tick tries again
            log.exception("event delivery failed", extra={"endpoint": endpoint.key})

    async def _attempt(self, endpoint: Endpoint, delivery: DueDelivery) -> bool:
        try:
            await self.post(endpoint, delivery)
        except DeliveryFailed as failure:
            attempts = delivery.attempts + 1
            retry_at = None
            if attempts < self.max_attempts:
                delay = min(self.backoff_initial * 2 ** (attempts - 1), self.backoff_max)
                retry_at = self.clock() + delay
            outcome = failure.outcome if retry_at is not None else "gave_up"
            self.count(outcome)
            log.warning(
                "event delivery failed",
                extra={
                    "endpoint": endpoint.key,
                    "event_id": delivery.event_id,
                    "attempts": attempts,
                    "error": str(failure),
                    "retry": retry_at is not None,
                },
            )
            await asyncio.to_thread(
                self.store.settle, delivery.seq, endpoint.key, str(failure), retry_at
            )
            return False
        self.count("delivered")
        await asyncio.to_thread(self.store.settle, delivery.seq, endpoint.key, None, None)
        return True

    async def post(self, endpoint: Endpoint, delivery: DueDelivery) -> None:
        """One attempt; raises DeliveryFailed unless the endpoint answered 2xx."""
        url = httpx.URL(endpoint.url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(endpoint.timeout):
                try:
                    addresses = await ssrf.resolve(host, port)
                except OSError as error:
                    raise DeliveryFailed(f"cannot resolve {host}: {error}") from None
                try:
                    address = ssrf.check(addresses, self.allow_private, endpoint.allow_networks)
                except ssrf.AddressRefused as refused:
                    raise DeliveryFailed(f"refused: {refused}", "blocked") from None
                headers = {
                    **endpoint.headers,
                    "Host": url.netloc.decode("ascii"),
                    "Content-Type": CONTENT_TYPE,
                    "User-Agent": USER_AGENT,
                    "Moorage-Event-Id": delivery.event_id,
                }
                if endpoint.secret:
                    headers[HEADER] = sign(endpoint.secret, delivery.body)
                # To the address just checked, never to a second resolution (DNS rebinding);
                # TLS still verifies the certificate against the endpoint's name.
                extensions = {"sni_hostname": host} if url.scheme == "https" else {}
                response = await self._client.post(
                    url.copy_with(host=str(address)),
                    content=delivery.body,
                    headers=headers,
                    extensions=extensions,
                )
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {endpoint.timeout:g} s") from None
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}"[:200]) from None
        if response.is_redirect:
            raise DeliveryFailed(f"redirect ({response.status_code}) not followed")
        if not response.is_success:
            raise DeliveryFailed(f"answered {response.status_code}")
