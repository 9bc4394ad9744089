"""The server's periodic garbage collection (``gc.interval``), run in a child process.

In a thread of the worker that started it, the collector shared that worker's GIL with the
event loop: every statement it runs releases the GIL inside SQLite, and with the worker busy it
waited up to the switch interval (5 ms) to get it back, *while holding the writer lock*. Its
2 ms write transactions then held the lock 16 ms at the median and 100 ms at p99 (a busy
Python thread beside it, bench/README.md), and pushes on every worker waited that out; a
shorter switch interval only halved it. In a process of its own, as ``moorage gc`` runs, its
transactions are as short as it paces them, and its CPU is the kernel's to share, not the
worker's.

Each run is a fresh process, *spawned* (a fork of a worker with threads may inherit a lock
some thread held), which builds its own registry from the same settings and runs one
collection under the cluster-wide lease, exactly as ``moorage gc`` does. Starting one costs
about a second of CPU (imports), so only the worker whose turn it is starts one
(app.py ``_my_turn_to_collect``). If the worker stops, the child
is terminated (a collection killed at any point is safe: docs/gc.md); if the worker dies, the
child finishes its run and exits.

The child runs at idle CPU and I/O priority (``gc.priority``, moorage/priority.py) from its
first act, before its imports: it then takes a core only when the requests leave one free, and
never preempts a request; but its write transactions run in a thread kept at the worker's
priority (:class:`~moorage.priority.WriterThread`), so that a transaction holding SQLite's
writer lock is not kept off a CPU while pushes wait for it.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

# Only what the child needs before it lowers its priority (it imports this module first).
from moorage.priority import WriterThread, lower_this_thread

if TYPE_CHECKING:
    from moorage.config import Settings
    from moorage.services.gc import GcReport


class CollectionFailed(Exception):
    """The child process failed (its error, as text) or died without answering."""


def _child(dump: dict[str, Any], answer: Connection) -> None:
    writer = None
    if dump["gc"]["priority"] == "idle":
        # First, before the imports (most of a second of CPU): a thread kept at the
        # worker's priority for the write transactions, then this one lowered for the rest.
        writer = WriterThread()
        lower_this_thread()
    # Imported here, in the child: the composition root imports this module.
    from moorage.app import build_registry, start_collection
    from moorage.config import Settings
    from moorage.services.gc import CollectorBusy, collect_exclusively
    from moorage.services.jobs import LeaseLost

    try:
        settings = Settings(**dump)
        registry = build_registry(settings)
        # As `moorage gc`: beating on a shared database, so the lease is taken over at once if
        # this process is killed.
        collector, leases, heartbeat = start_collection(settings, registry, writer)
        try:
            gc = settings.gc
            report = collect_exclusively(
                collector, leases, gc.grace, gc.dry_run, None, gc.full_interval
            )
        finally:
            if heartbeat is not None:
                heartbeat.stop()
        answer.send(("report", report))
    except (CollectorBusy, LeaseLost) as expected:
        answer.send(("raise", expected))
    except Exception as error:  # the parent logs it
        answer.send(("failed", f"{type(error).__name__}: {error}"))
    finally:
        answer.close()
        if writer is not None:
            writer.close()


class ChildCollection:
    """One collection in a child process: :meth:`result` waits for it (blocking: call it off
    the event loop); :meth:`stop` ends it early."""

    def __init__(self, settings: Settings) -> None:
        dump = settings.model_dump()
        # Each child is a new process id: in Prometheus's multiprocess mode each would leave
        # its own files behind, one set per run. The parent logs what it did instead.
        dump["metrics"]["enabled"] = False
        context = multiprocessing.get_context("spawn")
        self._answers, answer = context.Pipe(duplex=False)
        self._process: BaseProcess = context.Process(
            target=_child, args=(dump, answer), name="moorage-gc", daemon=True
        )
        self._process.start()
        answer.close()  # the child's end: EOF here once the child is gone

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def result(self) -> GcReport:
        """The child's report; raises CollectorBusy or LeaseLost as a collection in this
        process would, or CollectionFailed."""
        try:
            kind, value = self._answers.recv()
        except EOFError:
            self._process.join()
            raise CollectionFailed(
                f"the collector's process exited with {self._process.exitcode}"
            ) from None
        finally:
            self._answers.close()
        self._process.join()
        if kind == "raise":
            raise value
        if kind == "failed":
            raise CollectionFailed(value)
        from moorage.services.gc import GcReport

        assert isinstance(value, GcReport)
        return value

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
