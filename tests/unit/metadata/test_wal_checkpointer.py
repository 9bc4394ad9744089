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


def _steady_writes(
    store: SqlMetadataStore, seconds: float, database: Path, first: int
) -> tuple[int, int]:
    """A writer committing small transactions (a client's next request every millisecond)
    for ``seconds``: how many it committed, and the most log pages left uncopied at any
    moment, sampled meanwhile."""
    stop = threading.Event()
    committed = 0
    failures: list[BaseException] = []

    def writer() -> None:
        nonlocal committed
        try:
            while not stop.is_set():
                digest = f"sha256:{first + committed:064x}"
                with store._write() as conn:
                    conn.execute(insert(s.blobs), [{"digest": digest, "size": 1, "created_at": 0}])
                committed += 1
                stop.wait(0.001)
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    most = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            most = max(most, uncopied_pages(database)[1])
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(10)
    assert not failures, failures
    return committed, most


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
    writes, alone = _steady_writes(store, 1.5, path, first=0)
    assert alone > SQLITE_DEFAULT_AUTOCHECKPOINT / 2, alone  # the writes did fill the log

    with store._read() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpointer = WalCheckpointer(store, every=0.05)
    checkpointer.start()
    try:
        writes_then, checkpointed = _steady_writes(store, 1.5, path, first=writes)
    finally:
        checkpointer.stop()
    assert writes_then > writes / 2, (writes_then, writes)  # as steady a load
    assert checkpointed < alone / 2, (checkpointed, alone)
    assert checkpointed < SQLITE_DEFAULT_AUTOCHECKPOINT / 2, checkpointed


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
    assert not any(t.name == "moorage-wal-checkpoint" for t in threading.enumerate())
