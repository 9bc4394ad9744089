"""The metadata store under more concurrent readers than its connection pool holds."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.migrate import upgrade
from moorage.metadata.records import BlobRecord
from moorage.metadata.sql import POOL_OVERFLOW, POOL_SIZE, SqlMetadataStore, make_engine

READERS = POOL_SIZE + POOL_OVERFLOW + 16  # more threads than connections, like anyio's 40 + more


def test_more_reading_threads_than_connections_never_wait_for_the_pool(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}", pool_timeout=2.0)
    upgrade(engine)
    store = SqlMetadataStore(engine)
    store.link_blob("r/a", "sha256:" + "a" * 64, 3)
    start = threading.Barrier(READERS)

    def reader(_: int) -> int:
        start.wait()
        blobs = [store.linked_blob("r/a", "sha256:" + "a" * 64) for _ in range(20)]
        return sum(blob.size for blob in blobs if blob is not None)

    began = time.monotonic()
    with ThreadPoolExecutor(READERS) as pool:
        assert list(pool.map(reader, range(READERS))) == [60] * READERS
    assert time.monotonic() - began < 2.0  # nobody waited out a pool timeout


def test_an_exhausted_pool_is_503_not_a_hang(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}", pool_timeout=0.2)
    upgrade(engine)
    store = SqlMetadataStore(engine)
    held: list[Connection] = [engine.connect() for _ in range(POOL_SIZE + POOL_OVERFLOW)]
    try:
        # SQLite reads keep a connection of their own per thread, outside the pool...
        assert store.get_upload("r/a", "0" * 32) is None
        began = time.monotonic()
        # ...but the first write needs one from the pool.
        with pytest.raises(RegistryError) as info:
            store.link_blob("r/a", "sha256:" + "a" * 64, 3)
        assert info.value.code is ErrorCode.UNAVAILABLE
        assert info.value.status == 503
        assert info.value.headers["Retry-After"] == "1"
        assert time.monotonic() - began < 2.0
    finally:
        for conn in held:
            conn.close()
    store.link_blob("r/a", "sha256:" + "a" * 64, 3)  # and it recovers
    assert store.linked_blob("r/a", "sha256:" + "a" * 64) == BlobRecord(3)


def test_the_pool_is_the_configured_one(tmp_path: Path) -> None:
    from sqlalchemy.pool import QueuePool

    from moorage.app import open_database
    from moorage.config import load_settings

    settings = load_settings(
        storage={"data_dir": tmp_path},
        database={"pool_size": 3, "max_overflow": 2, "pool_timeout": 0.5},
    )
    engine = open_database(settings)
    try:
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 0.5)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "migrate", "mode"),
    [
        ("", None, "auto"),
        ("sqlite:////tmp/x.db", None, "auto"),
        ("postgresql+psycopg://u@h/db", None, "create"),
        ("postgresql+psycopg://u@h/db", "auto", "auto"),
        ("", "never", "never"),
    ],
)
def test_the_migrate_mode_defaults_by_database(url: str, migrate: str | None, mode: str) -> None:
    from moorage.config import DatabaseSettings

    assert DatabaseSettings(url=url, migrate=migrate).migrate_mode == mode
