"""Migration 0007: the process_beats table and uploads.appends, as schema.py declares them,
undone by its downgrade; sessions begun before it read every segment; compatible with 0006's
code (a rolling upgrade: docs/deploy/upgrade.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from moorage.metadata.migrate import MIGRATIONS, alembic_config, oldest_compatible, upgrade
from moorage.metadata.records import UploadSession
from moorage.metadata.schema import metadata
from moorage.metadata.sql import SqlMetadataStore, make_engine
from tests.support_pg import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    with postgres.fresh_database() as url:
        yield url


def test_0007_matches_the_schema_and_is_undone(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0006")
    store = SqlMetadataStore(engine)
    with engine.begin() as conn:  # a session in progress when the upgrade runs
        conn.execute(
            text(
                'INSERT INTO uploads (id, repository, algorithm, "offset", hash_state,'
                " created_at, updated_at) VALUES ('a', 'r', 'sha256', 5, :s, 1, 1)"
            ),
            {"s": b""},
        )
    upgrade(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if "api_tokens" not in repr(d)] == []
    old = store.get_upload("r", "a")
    assert old is not None and old.appends is None  # begun before: every segment counts
    store.create_upload(UploadSession("b", "r", "sha256", 0, b"", 1.0, 1.0))
    new = store.get_upload("r", "b")
    assert new is not None and new.appends == ()
    assert store.claim_upload("r", "b", 2.0, 100.0, "me") is not None
    assert store.release_upload("b", 100.0, 10, b"", 3.0, "c1")
    assert store.claim_upload("r", "b", 4.0, 101.0, "me") is not None
    assert store.release_upload("b", 101.0, 20, b"", 5.0, "c2")
    recorded = store.get_upload("r", "b")
    assert recorded is not None and recorded.appends == ("c1", "c2")

    command.downgrade(alembic_config(engine), "0006")
    assert "process_beats" not in inspect(engine).get_table_names()
    assert "appends" not in {c["name"] for c in inspect(engine).get_columns("uploads")}
    upgrade(engine)
    engine.dispose()


def test_0007_keeps_0006_code_running() -> None:
    assert oldest_compatible(ScriptDirectory(str(MIGRATIONS)), "0007") <= "0006"
