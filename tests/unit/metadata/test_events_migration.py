"""Migration 0006 creates the events and audit tables as schema.py declares them (the whole
schema is compared in test_gc_migration.py), and undoes them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from moorage.metadata.migrate import alembic_config, upgrade
from moorage.metadata.sql import make_engine

TABLES = {"events", "event_deliveries", "audit_log"}


def test_0006_creates_and_drops_the_events_and_audit_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    command.downgrade(alembic_config(engine), "0005")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
