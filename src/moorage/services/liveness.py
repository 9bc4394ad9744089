"""Whether a lease holder still runs, on this host or on another one (issue 14).

On this host the kernel answers (services/lease_holders.py): a holder whose process is gone is
dead, certainly. A holder on another host (or in another pid namespace) cannot be asked, so
every serving process also says it is alive in the database: it *beats* its row (its holder
name, the database's clock at the beat, and since when it has beaten without a gap) every
``every`` seconds from a thread of its own, and marks it stopped when it shuts down cleanly.
A holder elsewhere is then presumed dead when

- its row says it stopped (a clean shutdown: taken over at once), or
- its last beat is older than ``timeout`` by the database's clock (no node's clock is
  trusted against another's), *and* the process judging has itself beaten without a gap for a
  whole ``timeout`` and recently. After a database outage nobody could beat, so every row
  looks old; the judge's own unbroken run restarts when the database comes back, which gives
  every live holder one ``timeout`` to beat again before anyone is judged. A judge whose own
  beats are late may be the one cut off, and judges nobody.

A holder with no row at all is not judged (a process of an older release, which never beats):
its lease runs to its deadline as before. Being presumed dead is not certain (a holder cut off
from the database may still run), so whatever a holder does is fenced by its lease token
(services/leases.py), and its bytes are kept apart from the next holder's (storage: see
``BlobStore.separate_appends``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Protocol

from moorage.metadata.records import Sighting
from moorage.services.lease_holders import LeaseHolders

log = logging.getLogger("moorage.liveness")

#: Seconds between a process's beats, and after how long without one a holder elsewhere is
#: presumed dead (``cluster.node_timeout``).
BEAT_EVERY = 1.0
NODE_TIMEOUT = 5.0
#: Rows of processes that stopped (or vanished) this long ago are removed by the next beater.
FORGET_AFTER = 86400.0
_PRUNE_EVERY = 600.0


class Presence(Protocol):
    """The port: process rows in the database (metadata/presence_sql.py)."""

    def beat(self, process: str, gap: float) -> None:
        """Record a beat of ``process`` now; a beat more than ``gap`` after its previous one
        (or after it stopped) starts a new unbroken run."""

    def stop(self, process: str) -> None:
        """Mark ``process`` as shut down cleanly."""

    def sighting(self, holder: str, judge: str) -> Sighting:
        """Both rows and the database's clock, read together."""

    def forget(self, older_than: float) -> None:
        """Remove rows whose last beat is more than ``older_than`` seconds old."""


def presumed_dead(seen: Sighting, timeout: float) -> bool:
    """The rule in the module docstring."""
    holder, judge = seen.holder, seen.judge
    if holder is None:
        return False
    if holder.stopped:
        return True
    if judge is None or judge.stopped:
        return False
    if seen.now - judge.last > timeout / 2 or seen.now - judge.since < timeout:
        return False
    return seen.now - holder.last > timeout


def process_of(holder: str) -> str:
    """The process part of a holder name (job leases add ``#<random>`` to it)."""
    return holder.partition("#")[0]


class Liveness:
    """This process's holder name, and the liveness check for other holders: the kernel for
    holders on this host, then (once :meth:`use` gave it one) the database's process rows."""

    def __init__(self, holders: LeaseHolders | None = None) -> None:
        self.holders = holders or LeaseHolders()
        self._presence: Presence | None = None
        self.timeout = NODE_TIMEOUT

    def use(self, presence: Presence, timeout: float = NODE_TIMEOUT) -> None:
        self._presence, self.timeout = presence, timeout

    def forget(self) -> None:
        """Stop judging holders elsewhere (as before :meth:`use`): the database given is gone,
        as when the registry that gave it stops and another one starts in the same process."""
        self._presence, self.timeout = None, NODE_TIMEOUT

    def current(self) -> str:
        return self.holders.current()

    def is_dead(self, holder: str | None) -> bool:
        """True if ``holder`` certainly stopped (this host) or is presumed dead (elsewhere)."""
        if holder is None:
            return False
        if self.holders.is_local(holder):
            return self.holders.is_dead(holder)
        return self.presumed_dead_elsewhere(holder)

    def is_dead_here(self, holder: str | None) -> bool:
        """The kernel's answer only: for state a displaced holder could still damage."""
        return self.holders.is_dead(holder)

    def presumed_dead_elsewhere(self, holder: str) -> bool:
        if self._presence is None:
            return False
        seen = self._presence.sighting(process_of(holder), self.current())
        return presumed_dead(seen, self.timeout)

    def may_be_judged(self, holder: str | None) -> bool:
        """Whether waiting up to a timeout can tell that ``holder`` died: it is elsewhere and
        process rows are kept."""
        return (
            holder is not None and self._presence is not None and not self.holders.is_local(holder)
        )


#: This process's liveness: holder names are per process, and so are the beats.
PROCESS = Liveness()


class Heartbeat:
    """The thread that beats this process's row every ``every`` seconds."""

    def __init__(
        self,
        presence: Presence,
        liveness: Liveness = PROCESS,
        every: float = BEAT_EVERY,
    ) -> None:
        self._presence = presence
        self._liveness = liveness
        self._every = every
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Beat once now (so that this process has a row before it takes any lease), then
        from a thread: not the event loop, whose stalls must not look like a death."""
        self._beat()
        self._thread = threading.Thread(target=self._run, name="moorage-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and mark the row stopped, so that this process's leases are taken
        over at once."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._presence.stop(self._liveness.current())

    def _beat(self) -> bool:
        try:
            self._presence.beat(self._liveness.current(), self._liveness.timeout / 2)
        except Exception as error:  # the database is away: the next beat tries again
            log.debug("heartbeat failed: %s", error)
            return False
        return True

    def _run(self) -> None:
        pruned = time.monotonic()
        while not self._stopping.wait(self._every):
            if self._beat() and time.monotonic() - pruned > _PRUNE_EVERY:
                pruned = time.monotonic()
                with contextlib.suppress(Exception):
                    self._presence.forget(FORGET_AFTER)
