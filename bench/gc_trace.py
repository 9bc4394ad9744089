"""``moorage`` with the collector's events timestamped (bench/gc_load.py ``--trace``).

Run as the collector's command: ``python bench/gc_trace.py gc --data-dir ...``. It runs the
same CLI in the same process, with the collector's steps wrapped (in this process only, never
in the server), and at exit writes one JSON line per event to ``$GC_TRACE``:
``{"t": CLOCK_MONOTONIC seconds (shared by every process, so comparable with the load's
timestamps), "cpu": this process's CPU seconds so far, "ev": name, "v": a value (a sleep's
length), "sched": /proc/thread-self/schedstat (ns on a CPU, ns runnable but waiting for one,
slices)}``.

Events: ``start`` (before any import), ``imported`` (the CLI's modules loaded), ``lock_req`` /
``lock_got`` / ``lock_rel`` (SQLite's writer lock: the wait and the hold of each transaction),
``ckpt`` / ``ckpt_end`` (the collector's passive checkpoints), ``due`` / ``due_end`` (reading a
page of the review queue), ``unlink`` / ``unlink_end`` (a blob's bytes), ``sleep`` /
``sleep_end`` (the pacing pauses), ``exit``.

``GC_TRACE_NO_CHECKPOINT=1``: the collector leaves checkpoints to SQLite (see
``SqlGcStore._checkpoint``). ``GC_TRACE_NULL=SECONDS``: a null collector (it takes the lease
and sleeps, collecting nothing), to tell the bench's own noise from the collector's effect.
"""

from __future__ import annotations

import os
import time

_EVENTS: list[tuple[float, float, str, float, str]] = []


def _schedstat() -> str:
    """This thread's time on a CPU and waiting for one (ns), and its time slices."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return f.read().strip()
    except OSError:
        return ""


def note(event: str, value: float = 0.0) -> None:
    _EVENTS.append((time.monotonic(), time.process_time(), event, value, _schedstat()))


note("start")

import atexit  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

from moorage.cli.main import main  # noqa: E402
from moorage.metadata import gc_sql  # noqa: E402
from moorage.metadata.writer_lock import WriterLock  # noqa: E402
from moorage.services import gc as services_gc  # noqa: E402
from moorage.storage.filesystem import FilesystemBlobStore  # noqa: E402

note("imported")


def _write() -> None:
    note("exit")
    path = os.environ.get("GC_TRACE")
    if not path:
        return
    with open(path, "w") as out:
        for t, cpu, event, value, sched in _EVENTS:
            record = {"t": t, "cpu": cpu, "ev": event, "v": value, "sched": sched}
            out.write(json.dumps(record) + "\n")


def _around(owner: Any, name: str, event: str, when: Callable[..., bool] | None = None) -> None:
    """Wrap ``owner.name`` with ``event`` / ``event_end`` notes (only if ``when(self)``)."""
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        noted = when is None or when(*args)
        if noted:
            note(event)
        try:
            return original(*args, **kwargs)
        finally:
            if noted:
                note(event + "_end")

    setattr(owner, name, wrapped)


def _install() -> None:
    enter, leave = WriterLock.__enter__, WriterLock.__exit__

    def locked(self: WriterLock) -> None:
        note("lock_req")
        enter(self)
        note("lock_got")

    def unlocked(self: WriterLock, *exc: Any) -> None:
        leave(self, *exc)
        note("lock_rel")

    WriterLock.__enter__ = locked  # type: ignore[method-assign]
    WriterLock.__exit__ = unlocked  # type: ignore[method-assign]
    # Only the calls that do checkpoint (every CHECKPOINT_EVERY-th).
    _around(
        gc_sql.SqlGcStore,
        "_checkpoint",
        "ckpt",
        lambda store: (
            store._store._single_writer and store._since_checkpoint + 1 >= gc_sql.CHECKPOINT_EVERY
        ),
    )
    _around(gc_sql.SqlGcStore, "due", "due")
    _around(FilesystemBlobStore, "delete", "unlink")

    def sleep(seconds: float) -> None:
        note("sleep", seconds)
        time.sleep(seconds)
        note("sleep_end")

    gc_sql.time = SimpleNamespace(monotonic=time.monotonic, sleep=sleep)  # type: ignore[attr-defined,assignment]

    if os.environ.get("GC_TRACE_NO_CHECKPOINT"):
        # SQLite's own checkpoints then (in the commit that takes the log past 1,000 pages).
        gc_sql.CHECKPOINT_EVERY = 1 << 30

    null = os.environ.get("GC_TRACE_NULL")
    if null:

        def idle(self: services_gc.Collector, grace: float, **_: Any) -> services_gc.GcReport:
            time.sleep(float(null))  # under the lease (60 s), as long as a collection
            return services_gc.GcReport(dry_run=False, full=False, grace=grace)

        services_gc.Collector.run = idle  # type: ignore[method-assign,assignment]


@contextmanager
def _traced() -> Iterator[None]:
    _install()
    atexit.register(_write)
    yield


if __name__ == "__main__":
    with _traced():
        sys.argv[0] = "moorage"
        main()
