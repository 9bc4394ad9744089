"""Gauges of how much the registry holds, counted seldom: each count is a scan of a table, so a
scrape reuses the last one until it is ``max_age`` seconds old."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from moorage.metadata.records import Inventory

log = logging.getLogger("moorage.metrics")

_GAUGES = (
    ("moorage_repositories", "Repositories.", "repositories"),
    ("moorage_manifests", "Manifests (images, indexes and their children).", "manifests"),
    ("moorage_tags", "Tags.", "tags"),
    ("moorage_uploads_in_progress", "Upload sessions that received bytes and are not yet "
     "completed, cancelled or expired.", "upload_sessions"),
    ("moorage_blob_stored_bytes", "Bytes of every stored blob, each counted once.", "blob_bytes"),
)  # fmt: skip


class InventoryCollector:
    """A Prometheus collector of the :class:`Inventory` from ``count``, cached ``max_age``
    seconds. A failed count is logged and leaves the gauges out of that scrape."""

    def __init__(
        self,
        count: Callable[[], Inventory],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()  # two concurrent scrapes count once
        self._inventory: Inventory | None = None
        self._counted_at = 0.0

    def current(self) -> Inventory | None:
        with self._lock:
            now = self._clock()
            if self._inventory is None or now - self._counted_at >= self._max_age:
                try:
                    self._inventory = self._count()
                    self._counted_at = now
                except Exception:
                    log.warning("inventory count failed", exc_info=True)
                    return None
            return self._inventory

    def collect(self) -> Iterator[Metric]:
        inventory = self.current()
        if inventory is None:
            return
        for name, documentation, field in _GAUGES:
            yield GaugeMetricFamily(name, documentation, value=getattr(inventory, field))
