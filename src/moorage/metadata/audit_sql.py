"""The audit trail's table: batches written by each worker, queries for `moorage audit`,
pruning by the background worker (see :mod:`moorage.audit.trail`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from moorage.audit.entry import AuditEntry
from moorage.metadata import schema as s
from moorage.metadata.sql import SqlMetadataStore

_a = s.audit_log

# Column widths (schema.py): a value from a request is cut to fit, never refused.
_WIDTHS = {"user": 255, "client": 64, "repository": 255, "reference": 255, "request_id": 128}


def _row(entry: AuditEntry) -> dict[str, Any]:
    row = dataclasses.asdict(entry)
    for name, width in _WIDTHS.items():
        if row[name] is not None:
            row[name] = row[name][:width]
    return row


class SqlAuditLog:
    def __init__(self, store: SqlMetadataStore) -> None:
        # The metadata store's transaction helpers (SQLite's writer lock included).
        self._write, self._read = store._write, store._read

    def write(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            with self._write() as conn:
                conn.execute(_a.insert(), [_row(e) for e in entries])

    def query(
        self,
        user: str | None = None,
        repository: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Entries matching every filter given, oldest first (the newest ``limit``)."""
        statement = select(*(_a.c[f.name] for f in dataclasses.fields(AuditEntry)))
        if user is not None:
            statement = statement.where(_a.c.user == user)
        if repository is not None:
            statement = statement.where(_a.c.repository == repository)
        if since is not None:
            statement = statement.where(_a.c.at >= since)
        with self._read() as conn:
            rows = conn.execute(statement.order_by(_a.c.id.desc()).limit(limit)).all()
        return [AuditEntry(**row._asdict()) for row in reversed(rows)]

    def prune(self, before: float) -> int:
        with self._write() as conn:
            return int(conn.execute(_a.delete().where(_a.c.at < before)).rowcount)
