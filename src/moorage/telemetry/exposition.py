"""One scrape's text, and the per-process files that let every worker's figures add up.

granian runs each worker in its own process, and a scrape reaches one of them. In
prometheus-client's multiprocess mode each process writes its values to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR``, and the worker answering the scrape adds up all the files.
The variable must be set before any worker imports prometheus-client, so ``moorage serve``
prepares the directory before granian starts them (:mod:`moorage.telemetry.multiprocess_dir`).
Without it (tests, an embedding program) the values are this process's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from moorage.telemetry.multiprocess_dir import MULTIPROCESS_VARIABLE


class _Delegate:
    """Another registry's metrics, as one collector (``collect`` only, so no name checks)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def exposition(extra: Iterable[Collector] = ()) -> Callable[[], bytes]:
    """A function rendering every process's instruments plus ``extra`` in the text format.
    It reads files (and ``extra`` may query): call it off the event loop."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROCESS_VARIABLE)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Delegate(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return lambda: generate_latest(registry)
