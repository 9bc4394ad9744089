"""The server's background worker for events and the audit trail: delivers events and prunes
old rows, on one worker process at a time across processes and nodes (job lease "events").

Every worker process runs :func:`serve`; the one that takes the lease works until it dies (its
lease then runs out, or is taken over at once by a process on the same host that sees it is
dead: services/jobs.py), the others check back every ``STANDBY_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from moorage.events.delivery import Deliverer
from moorage.services.jobs import HeldLease, JobLeases, LeaseLost, new_holder

log = logging.getLogger("moorage.events")

LEASE = "events"
LEASE_SECONDS = 30.0
STANDBY_SECONDS = 5.0
HOUSEKEEPING_SECONDS = 3600.0


async def serve(
    deliverer: Deliverer | None,
    leases: JobLeases,
    housekeeping: Callable[[], None],
    poll_seconds: float = 1.0,
) -> None:
    held = HeldLease(leases, LEASE, new_holder(), LEASE_SECONDS)
    while True:
        try:
            if await asyncio.to_thread(held.take):
                await _hold(held, deliverer, housekeeping, poll_seconds)
        except LeaseLost:
            log.warning("event delivery stopped: its lease ran out")
        except Exception:
            log.exception("event worker failed")
        await asyncio.sleep(STANDBY_SECONDS)


async def _hold(
    held: HeldLease,
    deliverer: Deliverer | None,
    housekeeping: Callable[[], None],
    poll_seconds: float,
) -> None:
    last_housekeeping = -HOUSEKEEPING_SECONDS
    try:
        while True:
            await asyncio.to_thread(held.keep)
            if deliverer is not None:
                await deliverer.tick()
            if time.monotonic() - last_housekeeping >= HOUSEKEEPING_SECONDS:
                last_housekeeping = time.monotonic()
                await asyncio.to_thread(housekeeping)
            await asyncio.sleep(poll_seconds)
    finally:
        # Given up at shutdown so that a new server takes over at once. Called inline: the
        # task is being cancelled, and this is one short write.
        with contextlib.suppress(Exception):
            held.release()
        if deliverer is not None:
            await deliverer.stop()
