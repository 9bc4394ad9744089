"""One scrape's text, and the per-process files that let every worker's figures add up.

granian runs each worker in its own process, and a scrape reaches one of them. In
prometheus-client's multiprocess mode each process writes its values to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR``, and the worker answering the scrape adds up all the files.
The variable must be set before any worker imports prometheus-client, so ``moorage serve``
prepares the directory before granian starts them (:mod:`moorage.telemetry.multiprocess_dir`).
Without it (tests, an embedding program) the values are this process's own.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from moorage.telemetry.multiprocess_dir import MULTIPROCESS_VARIABLE


class _Delegate:
    """Another registry's metrics, as one collector (``collect`` only, so no name checks)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


# A "live" gauge's file (the pool gauges): its value counts only while its process lives.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def forget_dead_processes(directory: str) -> None:
    """Remove the live gauges' files of processes that are gone (a worker granian restarted):
    prometheus-client leaves that to whoever sees a process die, and nothing here does."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(path))
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, someone else's (a reused pid): leave it
            pass


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

    def render() -> bytes:
        if directory:
            forget_dead_processes(directory)
        return generate_latest(registry)

    return render
