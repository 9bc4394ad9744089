"""SQLite's log is copied into the database by a thread of each server process, not inside a
request's commit (metadata/wal_checkpointer.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from moorage.metadata import schema as s
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.metadata.wal_checkpointer import AUTOCHECKPOINT_PAGES, WalCheckpointer
from tests.support_wal import uncopied_pages, wait_until_copied

# SQLite's own default: a commit that takes the log to this many pages copies it all, holding
# the writer meanwhile.
SQLITE_DEFAULT_AUTOCHECKPOINT = 1000


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[SqlMetadataStore, Path]]:
    path = tmp_path / "moorage.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = SqlMetadataStore(engine)
    with store._write() as conn:
        conn.execute(insert(s.repositories), [{"id": 1, "name": "team/app", "created_at": 0.0}])
    with store._read() as conn:  # an empty log to start from
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    yield store, path
    engine.dispose()


def _steady_writes(store: SqlMetadataStore, commits: int, database: Path, first: int) -> int:
    """A writer committing ``commits`` small transactions, a client's next request a
    millisecond after each: the most log pages left uncopied at any moment, sampled
    meanwhile."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(first, first + commits):
                with store._write() as conn:
                    conn.execute(
                        insert(s.blobs),
                        [{"digest": f"sha256:{n:064x}", "size": 1, "created_at": 0}],
                    )
                time.sleep(0.001)
        except BaseException as error:
            failures.append(error)
        finally:
            stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    most = 0
    while not stop.is_set():
        most = max(most, uncopied_pages(database)[1])
        time.sleep(0.002)
    thread.join(10)
    assert not failures, failures
    return max(most, uncopied_pages(database)[1])


def test_commits_copy_the_log_themselves_only_past_a_backstop(
    database: tuple[SqlMetadataStore, Path],
) -> None:
    store, _ = database
    with store._write() as conn:
        value = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    assert value == AUTOCHECKPOINT_PAGES > SQLITE_DEFAULT_AUTOCHECKPOINT


def test_the_checkpointer_keeps_the_uncopied_log_short_under_steady_writes(
    database: tuple[SqlMetadataStore, Path],
) -> None:
    """Without it the log's uncopied pages grow until some commit copies them all (SQLite's
    default would do that at 1,000 pages, in the commit that gets there); with it they stay at
    what a few of its intervals bring."""
    store, path = database
    # Each commit adds two or more pages (a table's leaf, its index's), so 1,500 of them fill
    # the log past 1,000 pages without reaching the commits' own threshold.
    alone = _steady_writes(store, 1500, path, first=0)
    assert alone > SQLITE_DEFAULT_AUTOCHECKPOINT, alone

    with store._read() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpointer = WalCheckpointer(store, every=0.05)
    checkpointer.start()
    try:
        checkpointed = _steady_writes(store, 1500, path, first=1500)
    finally:
        checkpointer.stop()
    assert checkpointed < alone / 3, (checkpointed, alone)
    assert checkpointed < SQLITE_DEFAULT_AUTOCHECKPOINT, checkpointed


def test_the_checkpointer_copies_the_last_writes_once_they_stop(
    database: tuple[SqlMetadataStore, Path],
) -> None:
    store, path = database
    with store._write() as conn:
        conn.execute(text("UPDATE repositories SET created_at = 1"))
    frames, uncopied = uncopied_pages(path)
    assert frames > 0 and uncopied == frames  # nothing copies them on its own
    checkpointer = WalCheckpointer(store, every=0.01)
    checkpointer.start()
    try:
        copied = wait_until_copied(path)
    finally:
        checkpointer.stop()
    assert copied == (frames, 0)
