"""How long the collector holds SQLite's writer lock, and what CPU it takes (issue 10's p99).

One incremental collection over gc_load.py's database (100,000 blobs, 20,000 manifests, the
10% deleted: 10,000 links and 10,000 blobs to collect), in this process, the blob store a stub
(only the database's work is measured). Prints the process's CPU (total, and inside the write
transactions), the number of write transactions, and the distribution of how long each held
the writer (from taking the lock to the end of its commit) against ``gc.batch_time``: a hold
over twice the batch time is counted as a slow *commit* (over 3 ms beyond the body: e.g. a
SQLite checkpoint inside it) or a slow *body* (the candidates' statements: on a loaded machine,
mostly the process preempted while it holds the lock).

    python bench/gc_holds.py [--max-duty 0.025] [--batch-time 0.001] [--rounds 1]
                             [--busy-thread] [--switch-interval S] [--nice N]
                             [--template DIR]

``--busy-thread`` runs a CPU-bound Python thread beside the collector, as a busy worker's event
loop would beside a collector in one of its threads (their GIL is shared);
``--switch-interval`` sets ``sys.setswitchinterval`` for that case. ``--nice N`` lowers the
process's CPU priority. Run it from another checkout's venv to compare collectors (the
database is built by this checkout's gc_load.py). ``--template DIR`` keeps the database built
there (and reuses it if it is there), so that invocations from two venvs can alternate round by
round without building it each time (a minute or two).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from gc_load import load, prepare
from gc_scale import GRACE, StubStore
from moorage.metadata.gc_port import ManifestPolicy
from moorage.metadata.gc_sql import SQLITE_PACE, Pace, SqlGcStore
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.gc import Collector
from moorage.storage.port import BlobStore


def spin() -> None:
    x = 0
    while True:
        for i in range(1000):
            x += i


def one_collection(template: Path, workdir: Path, pace: Pace) -> dict[str, float]:
    data = workdir / "data"
    shutil.copytree(template, data)
    engine = make_engine(f"sqlite:///{data / 'moorage.db'}")
    gc_store = SqlGcStore(SqlMetadataStore(engine), pace)
    holds: list[tuple[float, float]] = []  # (held, of which the body: before the commit)
    cpu_inside = 0.0
    # Every write transaction of a collection goes through _held (the candidates' batches and
    # the others alike), from the moment it holds the writer to the end of its commit.
    held_by = gc_store._held

    @contextmanager
    def timed(dry_run: bool) -> Iterator[Any]:
        nonlocal cpu_inside
        with held_by(dry_run) as conn:
            started, cpu = time.monotonic(), time.thread_time()
            yield conn
            body = time.monotonic() - started
            cpu_inside += time.thread_time() - cpu
        holds.append((time.monotonic() - started, body))

    gc_store._held = timed  # type: ignore[method-assign]
    blobs = cast(BlobStore, StubStore())  # only what a collection calls
    collector = Collector(gc_store, blobs, ManifestPolicy(), lambda: 0)
    cpu, wall = time.process_time(), time.monotonic()
    report = collector.run(GRACE)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    engine.dispose()
    shutil.rmtree(data)
    held = sorted(h for h, _ in holds)
    batch = pace.batch_seconds

    def pct(q: float) -> float:
        return held[min(len(held) - 1, int(len(held) * q))] * 1000

    figures = {
        "candidates": float(report.totals["link"].count + report.totals["blob"].count),
        "wall s": wall,
        "cpu s": cpu,
        "cpu in transactions s": cpu_inside,
        "transactions": float(len(holds)),
        "hold p50 ms": pct(0.5),
        "hold p90 ms": pct(0.9),
        "hold p99 ms": pct(0.99),
        "hold max ms": held[-1] * 1000,
        "holds > 2x batch": float(sum(h > 2 * batch for h, _ in holds)),
        "slow commits": float(sum(h - b > 0.003 for h, b in holds)),
        "slow bodies": float(sum(b > 2 * batch for _, b in holds)),
    }
    print(
        f"  {figures['candidates']:.0f} candidates in {wall:.1f} s, CPU {cpu:.2f} s "
        f"({cpu_inside:.2f} s inside), {len(holds)} transactions; held p50 {pct(0.5):.2f}, "
        f"p90 {pct(0.9):.2f}, p99 {pct(0.99):.2f}, max {held[-1] * 1000:.1f} ms; "
        f"over 2x batch: {figures['holds > 2x batch']:.0f} (slow commit "
        f"{figures['slow commits']:.0f}, slow body {figures['slow bodies']:.0f}) ({load()})"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-duty", type=float, default=SQLITE_PACE.max_duty)
    parser.add_argument("--batch-time", type=float, default=SQLITE_PACE.batch_seconds)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--busy-thread", action="store_true")
    parser.add_argument("--switch-interval", type=float)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--template", type=Path, help="keep (or reuse) the database here")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    pace = Pace(args.batch_time, args.max_duty)
    with tempfile.TemporaryDirectory(prefix="moorage-gc-holds-") as tmp:
        template = args.template or Path(tmp) / "template"
        if not (template / "moorage.db").exists():
            prepare(template)
        if args.busy_thread:
            threading.Thread(target=spin, daemon=True).start()
        rounds = [one_collection(template, Path(tmp), pace) for _ in range(args.rounds)]
    if len(rounds) > 1:
        print(
            "median: "
            + ", ".join(f"{k} {statistics.median(r[k] for r in rounds):.2f}" for k in rounds[0])
        )


if __name__ == "__main__":
    main()
