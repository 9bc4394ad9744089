"""Exclusive, time-limited, fenced holds on upload sessions.

A request that writes to an upload holds its session's lease from the claim until it records
progress (PATCH) or publishes the blob (PUT), so two requests never write one upload at once.
The lease runs out (a crashed worker cannot block a session forever), so it is renewed while
held: by a timer, because a slow client may send nothing for longer than the lease, and before
each write, because a process that was frozen past its deadline must not write before it learns
that the session changed hands.

The lease's deadline is also its fencing token. A session can only be claimed once the previous
deadline has passed, so every new deadline is strictly greater than any expired one; each update
a holder makes is conditional on the deadline it last stored, and a holder whose lease expired
matches no row and is refused. (No separate token column: the deadline already has the property.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from moorage.metadata.port import MetadataStore


class LeaseLost(Exception):
    """The session expired under this holder and was claimed by, or deleted for, someone else."""


class UploadLease:
    """One request's hold on an upload session; thread-safe (the renewal timer shares it)."""

    def __init__(
        self,
        metadata: MetadataStore,
        upload_id: str,
        deadline: float,
        seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.upload_id = upload_id
        self._metadata = metadata
        self._deadline = deadline
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._lost = False
        self._ended = False

    @property
    def lost(self) -> bool:
        return self._lost

    def renew(self) -> None:
        """Extend the lease once a third of it has passed; raise :class:`LeaseLost` if it is
        no longer ours (then nothing more may be written to the upload)."""
        with self._lock:
            if self._lost:
                raise LeaseLost(self.upload_id)
            if self._ended:
                return
            now = self._clock()
            if self._deadline - now > self._seconds * 2 / 3:
                return
            until = now + self._seconds
            if not self._metadata.extend_lease(self.upload_id, self._deadline, until):
                self._lost = True
                raise LeaseLost(self.upload_id)
            self._deadline = until

    def end(self, update: Callable[[float], bool]) -> None:
        """Run the holder's last update (given the current token; it returns False when no
        row matched) and give the lease up. Raises :class:`LeaseLost` if it was not ours."""
        with self._lock:
            if self._lost:
                raise LeaseLost(self.upload_id)
            if self._ended:  # already given up (the session was discarded or completed)
                return
            self._ended = True
            if not update(self._deadline):
                self._lost = True
                raise LeaseLost(self.upload_id)


class LeaseRenewer:
    """One timer thread per service renewing every lease its requests hold; the thread runs
    only while some lease is held."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._leases: set[UploadLease] = set()
        self._lock = threading.Lock()
        self._running = False

    def hold(self, lease: UploadLease) -> None:
        with self._lock:
            self._leases.add(lease)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="moorage-lease", daemon=True).start()

    def drop(self, lease: UploadLease) -> None:
        with self._lock:
            self._leases.discard(lease)

    def _run(self) -> None:
        while True:
            time.sleep(self._every)
            with self._lock:
                leases = list(self._leases)
                if not leases:
                    self._running = False
                    return
            for lease in leases:
                try:
                    lease.renew()
                except Exception:  # noqa: S112 - lost (or unreachable DB): the holder finds out
                    continue
