"""Named job leases in the database (see :class:`moorage.services.jobs.JobLeases`)."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from moorage.metadata import schema as s
from moorage.metadata.gc_queue import dialect_insert
from moorage.metadata.sql import SqlMetadataStore

_l = s.job_leases


class SqlJobLeases:
    def __init__(self, store: SqlMetadataStore) -> None:
        self._store = store

    def acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        with self._store._write() as conn:
            # Take it if nobody has it, if it ran out, or if it is ours already (a renewal):
            # one conditional statement each, so two nodes can never both succeed.
            taken = conn.execute(
                update(_l)
                .where(_l.c.name == name, (_l.c.until < now) | (_l.c.holder == holder))
                .values(holder=holder, until=until)
            )
            if taken.rowcount > 0:
                return True
            # RETURNING, not rowcount: the driver's rowcount for an ignored insert differs.
            created = conn.execute(
                dialect_insert(conn)(_l).on_conflict_do_nothing().returning(_l.c.name),
                {"name": name, "holder": holder, "until": until},
            )
            return created.first() is not None

    def take_over(self, name: str, dead: str, holder: str, until: float) -> bool:
        with self._store._write() as conn:
            taken = conn.execute(
                update(_l)
                .where(_l.c.name == name, _l.c.holder == dead)
                .values(holder=holder, until=until)
            )
            return taken.rowcount > 0

    def release(self, name: str, holder: str) -> None:
        with self._store._write() as conn:
            conn.execute(delete(_l).where(_l.c.name == name, _l.c.holder == holder))

    def holder(self, name: str) -> tuple[str, float] | None:
        with self._store._read() as conn:
            row = conn.execute(select(_l.c.holder, _l.c.until).where(_l.c.name == name)).first()
        return None if row is None else (row.holder, float(row.until))
