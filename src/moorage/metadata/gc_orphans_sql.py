"""Orphaned objects of the blob store, as the collector's full runs find and delete them: part of
:class:`~moorage.metadata.gc_sql.SqlGcStore` (see :class:`~moorage.metadata.gc_port.GcStore`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, exists, literal, select

from moorage.metadata import schema as s
from moorage.metadata.gc_port import DeleteBytes, Orphan
from moorage.metadata.gc_queue import dialect_insert
from moorage.metadata.sql import SqlMetadataStore, _batches

_b, _o = s.blobs, s.gc_orphans


def one(conn: Connection, query: Any) -> bool:
    """Whether ``query`` (a boolean clause, e.g. ``exists(...)``) holds."""
    return conn.execute(select(literal(1)).where(query).limit(1)).first() is not None


class OrphanSql:
    """The orphan half of the store; the class using it provides these two."""

    _store: SqlMetadataStore

    def _transaction(self, dry_run: bool) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def unknown(self, found: Sequence[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        known: set[tuple[str, str | None]] = set()
        with self._store._read() as conn:
            for batch in _batches(sorted({digest for digest, _ in found})):
                rows = conn.execute(
                    select(_b.c.digest, _b.c.location).where(_b.c.digest.in_(batch))
                )
                known.update((row.digest, row.location) for row in rows)
        return [item for item in found if item not in known]

    def note_orphans(self, orphans: Sequence[tuple[str, str | None]], now: float) -> None:
        listed = {(digest, location or "") for digest, location in orphans}
        with self._store._write() as conn:
            recorded = {
                (row.digest, row.place) for row in conn.execute(select(_o.c.digest, _o.c.place))
            }
            for digest, place in recorded - listed:
                conn.execute(delete(_o).where(_o.c.digest == digest, _o.c.place == place))
            new = [
                {"digest": digest, "place": place, "seen_at": now}
                for digest, place in sorted(listed - recorded)
            ]
            if new:
                conn.execute(s.gc_orphans.insert(), new)

    def due_orphans(self, seen_before: float) -> list[Orphan]:
        with self._store._read() as conn:
            rows = conn.execute(
                select(_o).where(_o.c.seen_at <= seen_before).order_by(_o.c.digest, _o.c.place)
            ).all()
        return [Orphan(row.digest, row.place or None, float(row.seen_at)) for row in rows]

    def collect_orphan(self, orphan: Orphan, delete_bytes: DeleteBytes, dry_run: bool) -> bool:
        place = orphan.location or ""
        recorded = (_o.c.digest == orphan.digest) & (_o.c.place == place)
        deleted = False
        with self._transaction(dry_run) as conn:
            if (
                conn.execute(
                    select(_o.c.seen_at).where(recorded).with_for_update(skip_locked=True)
                ).first()
                is None
            ):
                return False  # gone, or another collector has it
            where = _b.c.digest == orphan.digest
            row = conn.execute(
                select(_b.c.location).where(where).with_for_update(skip_locked=True)
            ).first()
            placeholder = False
            if row is None:
                if one(conn, exists(select(literal(1)).where(where))):
                    return False  # a push holds the row right now
                # Nobody knows the digest: hold a placeholder row for it, so that a push of
                # this digest linking now waits for this transaction, then sees the bytes gone.
                inserted = conn.execute(
                    dialect_insert(conn)(_b).on_conflict_do_nothing().returning(_b.c.digest),
                    {
                        "digest": orphan.digest,
                        "size": 0,
                        "created_at": time.time(),
                        "location": None,
                    },
                ).first()
                if inserted is None:
                    return False
                placeholder = True
            elif row.location == orphan.location:
                conn.execute(delete(_o).where(recorded))  # known again: not an orphan
                return False
            conn.execute(delete(_o).where(recorded))
            if not dry_run:
                delete_bytes(orphan.digest, orphan.location)
            if placeholder:
                conn.execute(delete(_b).where(where))
            deleted = True
        return deleted
