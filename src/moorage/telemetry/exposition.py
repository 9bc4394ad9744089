"""One scrape's text, and the per-process files that let every worker's figures add up.

granian runs each worker in its own process, and a scrape reaches one of them. In
prometheus-client's multiprocess mode each process writes its values to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR``, and the worker answering the scrape adds up all the files.
The variable must be set before any worker imports prometheus-client, so ``moorage serve``
prepares the directory before granian starts them (:func:`prepare_multiprocess_dir`).
Without it (tests, an embedding program) the values are this process's own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Callable[[], None]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory; return its clean-up.

    An operator's own directory is emptied (files left by an earlier run would be added to
    this one's) and kept; otherwise a fresh private one is made and removed at the end.
    """
    given = os.environ.get(MULTIPROCESS_VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return lambda: None
    created = tempfile.mkdtemp(prefix="moorage-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = created
    return lambda: shutil.rmtree(created, ignore_errors=True)


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
