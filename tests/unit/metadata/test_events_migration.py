"""Migration 0006 creates the events and audit tables as schema.py declares them (the whole
schema is compared in test_gc_migration.py), and undoes them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from moorage.audit.entry import AuditEntry
from moorage.metadata.audit_sql import SqlAuditLog
from moorage.metadata.migrate import alembic_config, upgrade
from moorage.metadata.outbox import OutboxWriter, SqlEventStore
from moorage.metadata.schema import metadata
from moorage.metadata.sql import SqlMetadataStore, make_engine
from tests.support_pg import PostgresServer

TABLES = {"events", "event_deliveries", "audit_log"}


def test_0006_creates_and_drops_the_events_and_audit_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    command.downgrade(alembic_config(engine), "0005")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    with postgres.fresh_database() as url:
        yield url


def test_the_outbox_and_the_audit_log_on_each_database(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if "api_tokens" not in repr(d)] == []
    store = SqlMetadataStore(engine)
    store.link_blob("team/app", "sha256:" + "a" * 64, 2)
    with store.transaction() as conn:
        OutboxWriter("/moorage").record(conn, "dev.moorage.tag.deleted", "team/app", "t:1", {})
    events = SqlEventStore(store)
    assert events.backlog() == 1
    assert events.dispatch(lambda _t, _r: ["a", "b"]) == 1
    assert events.dispatch(lambda _t, _r: ["a", "b"]) == 0
    [due] = events.due("a", time.time() + 1, 10)
    events.settle(due.seq, "a", None, None)
    events.settle(due.seq, "b", "answered 500", None)
    [listed] = events.list(failed_only=True)
    assert {(d.endpoint, d.state) for d in listed.deliveries} == {
        ("a", "delivered"), ("b", "failed")
    }  # fmt: skip
    assert events.prune(time.time() + 1) == 0  # a failed delivery keeps it
    assert events.redeliver(None) == 1
    events.settle(due.seq, "b", None, None)
    assert events.prune(time.time() + 1) == 1 and events.list() == []

    audit = SqlAuditLog(store)
    audit.write([AuditEntry(time.time(), "login.failed", "refused", user="x" * 300, count=3)])
    [entry] = audit.query(user="x" * 255)
    assert entry.count == 3
    assert audit.prune(time.time() + 1) == 1
