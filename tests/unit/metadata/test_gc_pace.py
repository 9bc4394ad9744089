"""How the collector shares SQLite's single writer with the requests (docs/gc.md#costs): its
write transactions end after ``gc.batch_time``, and nothing heavy runs inside them."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import insert, text

from moorage.metadata import schema as s
from moorage.metadata.gc_port import ManifestPolicy
from moorage.metadata.gc_sql import Pace, SqlGcStore
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.oci.digest import Digest
from moorage.services.gc import Collector, GcReport
from moorage.storage.port import BlobStore
from tests.support_process import python_process

# SQLite's default wal_autocheckpoint: the commit that takes the log to this many pages copies
# the log into the database (with fsyncs) before it returns, holding the writer all along.
AUTOCHECKPOINT_PAGES = 1000
# Each frame of the log is a page and a 24-byte header; the file has a 32-byte header.
WAL_FRAME_HEADER, WAL_HEADER = 24, 32


class _NoBytes:
    """The blob store's part of a collection, for free (only the database is measured)."""

    def delete(self, digest: Digest, location: str | None = None) -> None:
        pass

    def iter_blobs(self) -> Iterator[tuple[Digest, str | None]]:
        return iter(())

    def stat(self, digest: Digest, location: str | None = None) -> int | None:
        return None


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[SqlMetadataStore, Path]]:
    path = tmp_path / "moorage.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield SqlMetadataStore(engine), path
    engine.dispose()


def _abandoned_uploads(store: SqlMetadataStore, count: int, first: int = 0) -> None:
    """``count`` blobs each linked to a repository by an upload whose manifest never came,
    their grace long over: a collection deletes every link, then every blob."""
    digests = [
        "sha256:" + hashlib.sha256(b"%d" % n).hexdigest() for n in range(first, first + count)
    ]
    with store._write() as conn:
        if first == 0:
            conn.execute(insert(s.repositories), [{"id": 1, "name": "team/app", "created_at": 0.0}])
        conn.execute(
            insert(s.blobs), [{"digest": d, "size": 1000, "created_at": 0.0} for d in digests]
        )
        conn.execute(
            insert(s.repository_blobs),
            [{"repository_id": 1, "digest": d, "created_at": 0.0} for d in digests],
        )
        conn.execute(
            insert(s.gc_reviews),
            [{"kind": "link", "repository_id": 1, "digest": d, "touched_at": 0.0} for d in digests],
        )
    with store._read() as conn:  # an empty log to start from
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def test_the_collector_checkpoints_sqlites_log_between_its_transactions_not_in_them(
    database: tuple[SqlMetadataStore, Path],
) -> None:
    """A collection writes thousands of pages to SQLite's log. SQLite copies the log into the
    database inside the commit that takes it past 1,000 pages: there, a collector's commit held
    the writer ~10 ms (fsyncs included) instead of the 2 ms of ``gc.batch_time``, about once
    in 20 transactions, and pushes waited it out. The collector checkpoints between its
    transactions instead, outside the writer lock, so the log never grows to that size."""
    store, path = database
    _abandoned_uploads(store, 2000)
    page_size = int(store.engine.connect().exec_driver_sql("PRAGMA page_size").scalar_one())
    collector = Collector(
        SqlGcStore(store), cast(BlobStore, _NoBytes()), ManifestPolicy(), lambda: 0
    )

    report = collector.run(grace=0.0)

    assert (report.totals["link"].count, report.totals["blob"].count) == (2000, 2000)
    with store._read() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == 0
    # The log's file keeps the size of its longest run between checkpoints.
    longest = (os.path.getsize(f"{path}-wal") - WAL_HEADER) // (page_size + WAL_FRAME_HEADER)
    assert 0 < longest < AUTOCHECKPOINT_PAGES / 2


def _collect_counting_transactions(store: SqlMetadataStore, pace: Pace) -> tuple[int, GcReport]:
    transactions = 0

    def counted(work: Callable[[], None]) -> None:
        nonlocal transactions
        transactions += 1
        work()

    gc_store = SqlGcStore(store, pace, writes_in=counted)
    collector = Collector(gc_store, cast(BlobStore, _NoBytes()), ManifestPolicy(), lambda: 0)
    report = collector.run(grace=0.0)
    return transactions, report


def test_the_collector_ends_its_transaction_as_soon_as_a_push_waits_for_the_writer(
    database: tuple[SqlMetadataStore, Path],
) -> None:
    """A push that finds the collector holding SQLite's writer waits for the candidate in
    hand and a commit, not for the rest of its batch: the collector commits early whenever
    another writer waits. Batches here are long enough (a minute) to take every candidate of a
    page of the queue in one transaction unless it yields."""
    store, _ = database
    long_batches = Pace(batch_seconds=60.0, max_duty=1.0)
    # Without a waiting writer: one transaction per page of the queue (100 candidates).
    pages = 2 * 1000 // 100
    _abandoned_uploads(store, 1000)
    alone, _ = _collect_counting_transactions(store, long_batches)
    assert alone <= pages + 2

    _abandoned_uploads(store, 1000, first=1000)
    stop = threading.Event()
    pushes = 0

    def pusher() -> None:
        nonlocal pushes
        while not stop.is_set():
            with store._write() as conn:
                conn.execute(text("UPDATE repositories SET created_at = created_at + 1"))
            pushes += 1
            stop.wait(0.001)  # a client's next request

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        with_pushes, report = _collect_counting_transactions(store, long_batches)
    finally:
        stop.set()
        thread.join(10)

    assert (report.totals["link"].count, report.totals["blob"].count) == (1000, 1000)
    # At a duty of 1 the collector holds the writer almost all the time, so nearly every push
    # waits for it, and each one that does ends a transaction early.
    assert pushes >= 10, pushes
    assert with_pushes >= pages + pushes // 2, (with_pushes, pushes)


def test_a_transaction_cut_short_still_pauses_as_long_as_a_whole_batch() -> None:
    """So a collector among steady pushes does less per wake, not wake more often (each wake
    delays the requests due just after it). Other short transactions (an orphan's, the last of
    a page) pause for what they held."""
    pace = Pace(batch_seconds=0.001, max_duty=0.025)
    assert pace.pause(0.0001, cut_short=True) == pytest.approx(0.039)
    assert pace.pause(0.0001) == pytest.approx(0.0039)
    assert pace.pause(0.002) == pytest.approx(0.078)


# A writer in another process (a server's worker): small commits, a millisecond apart, until
# its stdin closes; it prints "writing" after its first commit and its count at the end.
_OTHER_PROCESS_WRITER = """
import sys, threading
from sqlalchemy import text
from moorage.metadata.sql import SqlMetadataStore, make_engine
store = SqlMetadataStore(make_engine(sys.argv[1]))
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
n = 0
while not done.is_set():
    with store._write() as conn:
        conn.execute(text("UPDATE repositories SET created_at = created_at + 1"))
    n += 1
    if n == 1:
        print("writing", flush=True)
    done.wait(0.001)
print(n, flush=True)
"""


def test_the_collector_also_steps_aside_for_a_writer_of_another_process(
    database: tuple[SqlMetadataStore, Path],
) -> None:
    """As the server's collector runs: in a process of its own, beside the workers' pushes."""
    store, path = database
    _abandoned_uploads(store, 1000)
    pages = 2 * 1000 // 100
    with python_process(_OTHER_PROCESS_WRITER, f"sqlite:///{path}", ready="writing") as other:
        transactions, report = _collect_counting_transactions(
            store, Pace(batch_seconds=60.0, max_duty=1.0)
        )
        out, _ = other.communicate("", timeout=30)
    assert (report.totals["link"].count, report.totals["blob"].count) == (1000, 1000)
    assert int(out.strip()) >= 10
    assert transactions >= pages + 10, transactions
