"""The events outbox: writing an event inside the transaction of the change it reports (used
by :mod:`moorage.metadata.sql` and :mod:`moorage.metadata.usage_sql`), and the delivery
worker's and the CLI's queries over it (:class:`SqlEventStore`, an
:class:`moorage.events.port.EventStore`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, func, select, update

from moorage.events import cloudevents as ce
from moorage.events.context import ACTOR, REQUEST_ID
from moorage.events.port import Delivery, DueDelivery, EventRecord
from moorage.metadata import schema as s
from moorage.metadata.gc_queue import dialect_insert

if TYPE_CHECKING:  # sql.py imports this module for OutboxWriter
    from moorage.metadata.sql import SqlMetadataStore

_e, _d = s.events, s.event_deliveries

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

# Built once: every push runs it (constructing a statement costs more than running it on SQLite).
_INSERT_EVENT = _e.insert()


class OutboxWriter:
    """Adds one event row to the caller's transaction: it commits or rolls back with the change."""

    def __init__(self, source: str, pulls: bool = False) -> None:
        self.source = source
        self.pulls = pulls

    def record(
        self,
        conn: Connection,
        event_type: str,
        repository: str,
        subject: str,
        data: dict[str, Any],
    ) -> None:
        now = time.time()
        event_id = str(uuid.uuid4())
        data = {"repository": repository, **data}
        actor, request_id = ACTOR.get(), REQUEST_ID.get()
        if actor is not None:
            data["actor"] = actor
        if request_id is not None:
            data["requestId"] = request_id
        body = ce.envelope(event_id, event_type, self.source, subject, now, data)
        conn.execute(
            _INSERT_EVENT,
            {
                "id": event_id,
                "type": event_type,
                "repository": repository,
                "created_at": now,
                "body": body,
                "dispatched": 0,
            },
        )


class SqlEventStore:
    """The delivery worker's and the CLI's view of the outbox."""

    def __init__(self, store: SqlMetadataStore) -> None:
        # The metadata store's own transaction helpers (SQLite's writer lock included).
        self._write, self._read = store._write, store._read
        self._outbox = store.outbox

    def pulled(self, repository: str, reference: str, digest: str) -> None:
        """Record a manifest GET (``events.pull``). A pull changes nothing, so the event has a
        transaction of its own, committed without an fsync: a crash of the process keeps it,
        a power failure may lose the last ones."""
        if self._outbox is None:
            return
        with self._write(durable=False) as conn:
            self._outbox.record(
                conn,
                ce.MANIFEST_PULLED,
                repository,
                f"{repository}@{digest}",
                {"digest": digest, "reference": reference},
            )

    def dispatch(self, wants: Callable[[str, str], Sequence[str]], limit: int = 500) -> int:
        """Make the deliveries of up to ``limit`` new events: ``wants(type, repository)`` names
        the endpoints that get it. Returns how many events were dispatched."""
        now = time.time()
        new = (
            select(_e.c.seq, _e.c.type, _e.c.repository)
            .where(_e.c.dispatched == 0)
            .order_by(_e.c.seq)
            .limit(limit)
        )
        # Asked every second: a read first, so that an idle registry never takes the writer.
        with self._read() as conn:
            if conn.execute(new.with_only_columns(_e.c.seq)).first() is None:
                return 0
        # Without an fsync: a power failure can only undo the whole dispatch (the deliveries
        # and the flag commit together), and the events are then dispatched again.
        with self._write(durable=False) as conn:
            rows = conn.execute(new).all()
            deliveries = [
                {
                    "event_seq": row.seq,
                    "endpoint": endpoint,
                    "state": PENDING,
                    "attempts": 0,
                    "next_at": now,
                    "last_error": None,
                    "updated_at": now,
                }
                for row in rows
                for endpoint in wants(row.type, row.repository)
            ]
            if deliveries:
                conn.execute(dialect_insert(conn)(_d).on_conflict_do_nothing(), deliveries)
            if rows:
                conn.execute(
                    update(_e).where(_e.c.seq.in_([r.seq for r in rows])).values(dispatched=1)
                )
        return len(rows)

    def due(self, endpoint: str, now: float, limit: int) -> list[DueDelivery]:
        with self._read() as conn:
            rows = conn.execute(
                select(_d.c.event_seq, _d.c.attempts, _e.c.id, _e.c.body)
                .join(_e, _e.c.seq == _d.c.event_seq)
                .where(_d.c.endpoint == endpoint, _d.c.state == PENDING, _d.c.next_at <= now)
                .order_by(_d.c.event_seq)
                .limit(limit)
            ).all()
        return [DueDelivery(r.event_seq, r.id, r.body.encode(), r.attempts) for r in rows]

    def next_due(self, endpoint: str) -> float | None:
        with self._read() as conn:
            value = conn.execute(
                select(func.min(_d.c.next_at)).where(
                    _d.c.endpoint == endpoint, _d.c.state == PENDING
                )
            ).scalar()
        return None if value is None else float(value)

    def settle(self, seq: int, endpoint: str, error: str | None, retry_at: float | None) -> None:
        """Record an attempt: delivered (``error`` None), retried at ``retry_at``, or failed
        for good (``retry_at`` None). A retry also holds back the endpoint's other pending
        deliveries until then: the endpoint is down, so this one is its probe."""
        now = time.time()
        state = DELIVERED if error is None else PENDING if retry_at is not None else FAILED
        # Without an fsync: a record lost to a power failure means one more attempt, which
        # at-least-once delivery allows.
        with self._write(durable=False) as conn:
            conn.execute(
                update(_d)
                .where(_d.c.event_seq == seq, _d.c.endpoint == endpoint)
                .values(
                    state=state,
                    attempts=_d.c.attempts + 1,
                    next_at=retry_at if retry_at is not None else now,
                    last_error=None if error is None else error[:255],
                    updated_at=now,
                )
            )
            if retry_at is not None:
                conn.execute(
                    update(_d)
                    .where(_d.c.endpoint == endpoint, _d.c.state == PENDING)
                    .where(_d.c.next_at < retry_at)
                    .values(next_at=retry_at)
                )

    def backlog(self) -> int:
        """Events not yet dispatched plus deliveries still pending."""
        with self._read() as conn:
            undispatched = conn.execute(
                select(func.count()).select_from(_e).where(_e.c.dispatched == 0)
            ).scalar_one()
            pending = conn.execute(
                select(func.count()).select_from(_d).where(_d.c.state == PENDING)
            ).scalar_one()
        return int(undispatched) + int(pending)

    def list(self, failed_only: bool = False, limit: int = 100) -> list[EventRecord]:
        """The newest events (``failed_only``: those with a delivery that gave up), each with
        its deliveries."""
        with self._read() as conn:
            query = select(_e.c.seq, _e.c.id, _e.c.type, _e.c.repository, _e.c.created_at)
            if failed_only:
                failed = select(_d.c.event_seq).where(_d.c.state == FAILED)
                query = query.where(_e.c.seq.in_(failed))
            events = conn.execute(query.order_by(_e.c.seq.desc()).limit(limit)).all()
            seqs = [e.seq for e in events]
            deliveries: dict[int, list[Delivery]] = {seq: [] for seq in seqs}
            if seqs:
                for d in conn.execute(
                    select(_d).where(_d.c.event_seq.in_(seqs)).order_by(_d.c.endpoint)
                ):
                    deliveries[d.event_seq].append(
                        Delivery(d.endpoint, d.state, d.attempts, d.last_error, d.updated_at)
                    )
        return [
            EventRecord(e.id, e.type, e.repository, e.created_at, tuple(deliveries[e.seq]))
            for e in events
        ]

    def redeliver(self, event_id: str | None) -> int:
        """Make deliveries due again now, from their first attempt: every delivery of the event
        ``event_id`` (delivered ones too), or with None every one that gave up. Returns how
        many."""
        now = time.time()
        with self._write() as conn:
            if event_id is None:
                condition = _d.c.state == FAILED
            else:
                seq = select(_e.c.seq).where(_e.c.id == event_id).scalar_subquery()
                condition = _d.c.event_seq == seq
            result = conn.execute(
                update(_d)
                .where(condition)
                .values(state=PENDING, attempts=0, next_at=now, updated_at=now)
            )
            return int(result.rowcount)

    def prune(self, before: float) -> int:
        """Delete events older than ``before`` whose every delivery succeeded (or that no
        endpoint wanted). Events with a pending or failed delivery stay."""
        with self._write() as conn:
            unsettled = select(_d.c.event_seq).where(_d.c.state != DELIVERED)
            old = select(_e.c.seq).where(
                and_(_e.c.created_at < before, _e.c.dispatched == 1, _e.c.seq.not_in(unsettled))
            )
            seqs = conn.execute(old).scalars().all()
            for start in range(0, len(seqs), 500):
                batch = seqs[start : start + 500]
                conn.execute(_d.delete().where(_d.c.event_seq.in_(batch)))
                conn.execute(_e.delete().where(_e.c.seq.in_(batch)))
            return len(seqs)
