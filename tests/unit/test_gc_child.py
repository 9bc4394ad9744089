"""The server's collections run in a child process (gc_child.py): what the worker gets back."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from moorage.config import load_settings
from moorage.gc_child import ChildCollection, CollectionFailed
from moorage.metadata.job_leases import SqlJobLeases
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.priority import IOPRIO_IDLE, io_priority
from moorage.services.gc import GC_LEASE, CollectorBusy


def test_a_collection_in_the_child_reports_to_the_worker(tmp_path: Path) -> None:
    settings = load_settings(storage={"data_dir": str(tmp_path / "data")})

    report = ChildCollection(settings).result()

    # The registry's first run is a full one (none ran within gc.full_interval).
    assert report.full and not report.dry_run and report.items == []


def _threads(pid: int) -> dict[int, tuple[int, int]]:
    """Each thread of ``pid``: its CPU scheduling policy and I/O priority. OSError once it
    has exited (a zombie, not yet reaped, included)."""
    if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
        raise ProcessLookupError(pid)
    seen = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        tid = int(task)
        seen[tid] = (os.sched_getscheduler(tid), io_priority(tid))
    return seen


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling only")
@pytest.mark.parametrize(("priority", "idle"), [("idle", True), ("normal", False)])
def test_the_collector_process_runs_idle_but_its_writes_do_not(
    tmp_path: Path, priority: str, idle: bool
) -> None:
    settings = load_settings(
        storage={"data_dir": str(tmp_path / "data")}, gc={"priority": priority}
    )
    mine = os.sched_getscheduler(0), io_priority()

    child = ChildCollection(settings)
    pid = child.pid
    assert pid is not None
    samples = []
    # Sampled while it starts and runs (its imports take a good part of a second).
    deadline = time.monotonic() + 30
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline:
            samples.append(_threads(pid))
            if idle and samples[-1][pid][0] == os.SCHED_IDLE:
                break
            time.sleep(0.005)
    child.result()

    if idle:
        threads = samples[-1]
        assert threads.pop(pid) == (os.SCHED_IDLE, IOPRIO_IDLE)  # its main thread, lowered
        assert mine in threads.values()  # the writer thread, made before, as the worker
    else:
        assert all(t[pid] == mine for t in samples)
    assert (os.sched_getscheduler(0), io_priority()) == mine  # the worker's, unchanged


def test_another_collector_holding_the_lease_is_reported_as_busy(tmp_path: Path) -> None:
    settings = load_settings(storage={"data_dir": str(tmp_path / "data")})
    ChildCollection(settings).result()  # creates and migrates the database
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}")
    leases = SqlJobLeases(SqlMetadataStore(engine))
    now = 1e12  # far ahead: held whatever the clock says
    assert leases.acquire(GC_LEASE, f"elsewhere:{os.getpid()}", now, now + 60)

    with pytest.raises(CollectorBusy):
        ChildCollection(settings).result()
    engine.dispose()


def test_a_child_that_fails_says_why(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    settings = load_settings(storage={"data_dir": str(tmp_path / "a-file" / "data")})

    with pytest.raises(CollectionFailed, match="a-file"):
        ChildCollection(settings).result()


def test_one_worker_per_interval_starts_the_collection(tmp_path: Path) -> None:
    # Every worker (and node) wakes up once per gc.interval; only the first to ask spawns a
    # collector process, the others skip their turn instead of spawning one to find it busy.
    from moorage.app import _my_turn_to_collect
    from moorage.metadata.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'moorage.db'}")
    upgrade(engine)
    leases = SqlJobLeases(SqlMetadataStore(engine))
    interval = 0.3

    assert _my_turn_to_collect(leases, interval)
    assert not _my_turn_to_collect(leases, interval)  # a second worker, same interval
    time.sleep(interval)
    assert _my_turn_to_collect(leases, interval)  # the next interval's turn
    engine.dispose()
