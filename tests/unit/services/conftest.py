"""The service tests that race database transactions run on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'moorage.db'}"
        return
    with request.getfixturevalue("postgres").fresh_database() as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[SqlMetadataStore]:
    """A metadata store on that database, migrated."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield SqlMetadataStore(engine)
    engine.dispose()
