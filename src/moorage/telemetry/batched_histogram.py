"""Histogram observations gathered, then added to a prometheus-client Histogram in one go.

In multiprocess mode each observation updates two memory-mapped values (the sum and a bucket),
each under a lock with a pid check: 3 to 8 us in a request, against a fraction of a microsecond
to add to a list here. prometheus-client has no public call to add several observations, so
:func:`add_observations` writes the child's ``_sum`` and ``_buckets`` itself, as ``observe``
does (a unit test checks the two agree, so an upgrade that changes them fails the tests).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

from prometheus_client import Histogram


class Observations:
    """Pending observations for histograms whose upper bounds are ``bounds`` (+Inf implied)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # one per bucket, the last is +Inf
        self.total = 0.0

    def add(self, value: float) -> None:
        self.total += value
        # The first bucket whose bound is >= value: Prometheus buckets are "less or equal".
        self.counts[bisect.bisect_left(self.bounds, value)] += 1


def add_observations(child: Histogram, observations: Observations) -> None:
    """Add ``observations`` to ``child`` (a labelled child, or an unlabelled Histogram)."""
    child._sum.inc(observations.total)
    for bucket, count in zip(child._buckets, observations.counts, strict=True):
        if count:
            bucket.inc(count)


class PendingObservations:
    """Observations of one unlabelled histogram, from any thread, added to it by :meth:`flush`
    (the server's publisher: once a second and before a scrape). For the metadata write
    transactions: observing each one directly cost a lock, two ``getpid`` calls and two
    memory-map writes on the worker thread of every push, 8% of the worker threads' time with
    the GIL on a 4 KiB push (py-spy, 2026-12-06)."""

    def __init__(self, histogram: Histogram, bounds: Sequence[float]) -> None:
        self._histogram = histogram
        self._bounds = bounds
        self._lock = threading.Lock()
        self._pending = Observations(bounds)

    def record(self, value: float) -> None:
        with self._lock:
            self._pending.add(value)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Observations(self._bounds)
        if any(pending.counts):
            add_observations(self._histogram, pending)
