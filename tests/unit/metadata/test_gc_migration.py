"""Migration 0005 creates exactly what schema.py declares for garbage collection, and undoes it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from moorage.metadata.migrate import alembic_config, upgrade
from moorage.metadata.schema import metadata
from moorage.metadata.sql import make_engine

GC_TABLES = {"gc_reviews", "gc_orphans", "job_leases"}


def test_the_migrated_schema_is_the_declared_one(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    # Tables declared elsewhere (the API tokens' own module) are not schema.py's business.
    assert [d for d in diffs if "api_tokens" not in repr(d)] == []
    assert set(inspect(engine).get_table_names()) >= GC_TABLES


def test_downgrade_removes_the_gc_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    command.downgrade(alembic_config(engine), "0003")
    inspector = inspect(engine)
    assert not GC_TABLES & set(inspector.get_table_names())
    assert "ix_repository_blobs_digest" not in {
        i["name"] for i in inspector.get_indexes("repository_blobs")
    }
    upgrade(engine)  # and back
