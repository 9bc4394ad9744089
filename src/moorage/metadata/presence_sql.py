"""Process rows in the database (the port is ``moorage.services.liveness.Presence``).

Every time is the database's own clock, so that no node's clock is compared with another's:
PostgreSQL's ``clock_timestamp()``, SQLite's ``julianday('now')`` (on SQLite every process
shares one host's clock anyway).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, case, delete, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from moorage.metadata import schema as s
from moorage.metadata.gc_queue import dialect_insert
from moorage.metadata.records import Beat, Sighting
from moorage.metadata.sql import SqlMetadataStore

_b = s.process_beats


class database_now(FunctionElement[float]):
    """The database server's clock, in seconds since the epoch."""

    type = Float()
    inherit_cache = True


@compiles(database_now, "postgresql")
def _postgres_now(element: database_now, compiler: Any, **kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(database_now, "sqlite")
def _sqlite_now(element: database_now, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


class SqlPresence:
    def __init__(self, store: SqlMetadataStore) -> None:
        self._store = store

    def beat(self, process: str, gap: float) -> None:
        now = database_now()
        broken = (_b.c.last_beat < now - gap) | _b.c.stopped
        # Not durable: a beat lost in a crash is replaced by the next one a second later.
        with self._store._write(durable=False) as conn:
            beaten = conn.execute(
                update(_b)
                .where(_b.c.process == process)
                .values(since=case((broken, now), else_=_b.c.since), last_beat=now, stopped=False)
            )
            if beaten.rowcount == 0:
                conn.execute(
                    dialect_insert(conn)(_b)
                    .values(process=process, last_beat=now, since=now, stopped=False)
                    .on_conflict_do_nothing()
                )

    def stop(self, process: str) -> None:
        with self._store._write() as conn:
            conn.execute(update(_b).where(_b.c.process == process).values(stopped=True))

    def sighting(self, holder: str, judge: str) -> Sighting:
        with self._store._read() as conn:
            now = float(conn.execute(select(database_now())).scalar_one())
            rows = conn.execute(
                select(_b.c.process, _b.c.last_beat, _b.c.since, _b.c.stopped).where(
                    _b.c.process.in_((holder, judge))
                )
            ).all()
        beats = {row.process: Beat(row.last_beat, row.since, bool(row.stopped)) for row in rows}
        return Sighting(now, beats.get(holder), beats.get(judge))

    def forget(self, older_than: float) -> None:
        with self._store._write(durable=False) as conn:
            conn.execute(delete(_b).where(_b.c.last_beat < database_now() - older_than))
