"""Background jobs that must run on one worker at a time across processes and nodes.

A job holds a named lease in the database while it runs and renews it as it goes; a holder that
dies stops renewing, and once its lease runs out another worker may take the job over. A holder
known to be dead (killed on this host, or presumed dead on another: services/liveness.py) is
taken over at once. Two holders of one job at once are harmless, only wasteful: the collector
decides under row locks, and event deliveries are at least once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Protocol

from moorage.services.liveness import PROCESS, Liveness


class JobLeases(Protocol):
    """Named leases: at most one holder per name whose lease has not run out."""

    def acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        """Take (or renew, for the same ``holder``) lease ``name`` until ``until``. True if
        ``holder`` has it now: nobody held it, its lease ran out before ``now``, or it was
        ``holder``'s already. Decided in one transaction, so two callers never both win."""

    def take_over(self, name: str, dead: str, holder: str, until: float) -> bool:
        """Take lease ``name`` from ``dead`` (a holder known to have died) whatever its time;
        False if ``dead`` no longer holds it."""

    def release(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` still has it (else nothing)."""

    def holder(self, name: str) -> tuple[str, float] | None:
        """Who holds lease ``name`` and until when (possibly already run out), or None."""


class LeaseLost(Exception):
    """The job's lease ran out and could not be renewed: another worker may run the job."""


def new_holder(liveness: Liveness = PROCESS) -> str:
    """A name for this process's claim, which other processes can check on (the same name
    upload leases use), plus a random part so that two claims of one process differ."""
    return f"{liveness.current()}#{uuid.uuid4().hex[:8]}"


class HeldLease:
    """A lease this process holds: :meth:`keep` renews it when half of it has passed."""

    def __init__(
        self,
        leases: JobLeases,
        name: str,
        holder: str,
        seconds: float,
        clock: Callable[[], float] = time.time,
        liveness: Liveness = PROCESS,
    ) -> None:
        self.leases, self.name, self.holder, self.seconds, self.clock = (
            leases,
            name,
            holder,
            seconds,
            clock,
        )
        self.liveness = liveness
        self.until = 0.0

    def take(self) -> bool:
        now = self.clock()
        if not self.leases.acquire(self.name, self.holder, now, now + self.seconds):
            held = self.leases.holder(self.name)
            if held is None or not self.liveness.is_dead(held[0]):
                return False
            # Its holder was killed (say `moorage gc` got SIGKILL, or its node died): no need
            # to wait for the lease to run out.
            if not self.leases.take_over(self.name, held[0], self.holder, now + self.seconds):
                return False
        self.until = now + self.seconds
        return True

    def keep(self) -> None:
        """Renew when half the lease has passed; raises :class:`LeaseLost` if it cannot."""
        now = self.clock()
        if now < self.until - self.seconds / 2:
            return
        if now >= self.until or not self.leases.acquire(
            self.name, self.holder, now, now + self.seconds
        ):
            raise LeaseLost(self.name)
        self.until = now + self.seconds

    def release(self) -> None:
        self.leases.release(self.name, self.holder)
