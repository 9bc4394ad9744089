"""The :class:`~moorage.metadata.gc_port.GcStore` on SQLAlchemy Core (SQLite and PostgreSQL).

Each batch of candidates is one write transaction of the registry's metadata store (the same
writer lock on SQLite). On PostgreSQL every row a decision rests on is locked ``FOR UPDATE SKIP
LOCKED``: a row a request holds (a manifest PUT share-locks the links it checks, a blob push
locks the blob row) is skipped, so the collector never waits for, nor deadlocks with, a request;
the request sees the collector's outcome once it commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    tuple_,
)

from moorage.metadata import gc_queue
from moorage.metadata import schema as s
from moorage.metadata.gc_orphans_sql import OrphanSql, one
from moorage.metadata.gc_port import (
    Candidate,
    Collected,
    DeleteBytes,
    ManifestPolicy,
    TagRecord,
)
from moorage.metadata.gc_queue import BLOB, LINK, MANIFEST
from moorage.metadata.prepared import Prepared
from moorage.metadata.sql import SqlMetadataStore, _batches

_r, _b, _rb, _m, _mb, _mc, _t = (
    s.gc_reviews,
    s.blobs,
    s.repository_blobs,
    s.manifests,
    s.manifest_blobs,
    s.manifest_children,
    s.tags,
)


@dataclass(frozen=True)
class Pace:
    """How hard the collector may lean on the database: each write transaction ends once it
    has run ``batch_seconds`` (even if candidates remain), and the collector then waits so
    that its transactions take at most ``max_duty`` of the time (a duty of 0.2: a pause of 4x
    the batch). A pause after each transaction, not a rate, so a slow database slows it too."""

    batch_seconds: float
    max_duty: float

    def pause(self, held: float, cut_short: bool = False) -> float:
        # A transaction cut short for a waiting writer still counts as a whole batch, so the
        # collector wakes no more often under contention (each wake delays the requests due
        # just after it); it does less per wake instead. Other short ones (the last of a
        # page, an orphan's) pause for what they held.
        return (max(held, self.batch_seconds) if cut_short else held) * (1.0 / self.max_duty - 1.0)


# SQLite has one writer: a push that arrives during a collector's transaction waits for the rest
# of it, so batches are short (a push's own transaction is about 1 ms), and the collector takes
# at most a twentieth of the writer's time (and about as much of a core: on a small machine its
# CPU is queueing for every request). Then about one push in twenty waits, at most ~2 ms. With
# 50 ms batches and a duty of 0.5, issue 10's load (bench/gc_load.py) ran pushes at 0.47 of their
# rate alone, p99 3.8x; at 2 ms and 0.1, push p99 was still 1.36x and GET p99 1.85x. A duty of
# 0.05 became affordable once each candidate cost a third of the CPU (statements through the
# driver, prepared.py): a collection of issue 10's scale takes no longer than it did at 0.1.
# 1 ms batches (2 ms until 2026-12-06): the GETs due just after each transaction wait for its
# CPU, so a shorter one costs them less; in bench/gc_load.py's idle run of 5 rounds each the
# pooled open-loop GET p99 went from 1.34x (90% bootstrap over rounds 1.16-1.53) to 1.21x
# (0.98-1.43) of alone, for a collection about 40% longer. See bench/README.md (the gentle
# collector; the latest idle-machine run).
# A duty of 0.025 (0.05 until 2026-12-06): half as many wakes a second, so half as many GETs due
# just after one; idle gc_load.py, 5 rounds each alternated, pooled open-loop GET p99 1.45x
# (90% bootstrap over rounds 1.34-1.54) -> 1.19x (1.14-1.23), push p99 1.33x -> 1.11x, for a
# collection about twice as long (59 -> 127 s for issue 10's 20,000 candidates). Set-based
# batches, tried for fewer transactions, did no less work (bench/README.md, session 13).
# A duty of 0.0125 (0.025 until 2026-12-06, session 15), for the same reason: idle gc_load.py,
# 4 rounds each alternated, pooled open-loop GET p99 1.16x (1.11-1.22) -> 1.09x (1.06-1.15),
# push p99 1.11x -> 1.00x, at capacity one client's push p99 1.22x -> 1.09x; the collection
# 207 -> 504 s. Moving SQLite's checkpoints instead did nothing for the GETs (bench/README.md).
SQLITE_PACE = Pace(batch_seconds=0.001, max_duty=0.0125)
# PostgreSQL locks rows: requests wait only for rows the collector holds, which are garbage
# (SKIP LOCKED leaves the rest), so batches may be longer (fewer commits); the duty still
# leaves the database server's CPU and I/O half to the requests.
POSTGRES_PACE = Pace(batch_seconds=0.05, max_duty=0.5)


# The collector checkpoints SQLite's log after every this many of its transactions: each writes
# ~50 pages to the log (issue 10's scale: 52,000 pages in ~1,100 transactions of 2 ms), so ~200
# pages a checkpoint, well under the commits' own threshold (1,000 pages, SQLite's default, until
# 2026-12-06; now 4,000, metadata/wal_checkpointer.py, where a server's thread checkpoints too).
# About three fsyncs each: 856 for issue 10's scale where SQLite's own checkpoints made 200, but
# none of them with the writer lock held. See SqlGcStore._checkpoint.
CHECKPOINT_EVERY = 4


def default_pace(single_writer: bool) -> Pace:
    return SQLITE_PACE if single_writer else POSTGRES_PACE


class _Rollback(Exception):
    """Ends a dry run's transaction without committing it."""


# The statements run per candidate, built once (building a SQLAlchemy expression costs more
# than running it on SQLite: this halved a collection's time). Parameters: kind, rid, digest.
_KIND = bindparam("kind", type_=String())
_RID = bindparam("rid", type_=Integer())
_DIGEST = bindparam("digest", type_=String())
_REVIEW_KEY = (_r.c.kind == _KIND) & (_r.c.repository_id == _RID) & (_r.c.digest == _DIGEST)
_LOCK_REVIEW = Prepared(
    select(_r.c.touched_at).where(_REVIEW_KEY).with_for_update(skip_locked=True)
)
_DROP_REVIEW = Prepared(delete(_r).where(_REVIEW_KEY))
_LINK_KEY = (_rb.c.repository_id == _RID) & (_rb.c.digest == _DIGEST)
_LOCK_LINK = Prepared(select(_rb.c.digest).where(_LINK_KEY).with_for_update(skip_locked=True))
_LINK_EXISTS = Prepared(select(literal(1)).where(_LINK_KEY).limit(1))
_DELETE_LINK = Prepared(delete(_rb).where(_LINK_KEY))
_REFERENCED_IN_REPOSITORY = Prepared(
    select(literal(1))
    .select_from(_mb.join(_m, _m.c.id == _mb.c.manifest_id))
    .where(_m.c.repository_id == _RID, _mb.c.digest == _DIGEST)
    .limit(1)
)
_BLOB_SIZE = Prepared(select(_b.c.size).where(_b.c.digest == _DIGEST))
_LOCK_BLOB = Prepared(
    select(_b.c.size, _b.c.location).where(_b.c.digest == _DIGEST).with_for_update(skip_locked=True)
)
_BLOB_EXISTS = Prepared(select(literal(1)).where(_b.c.digest == _DIGEST).limit(1))
_DELETE_BLOB = Prepared(delete(_b).where(_b.c.digest == _DIGEST))
# Some repository links the blob, or some manifest (of any repository) references it.
_BLOB_IN_USE = Prepared(
    select(literal(1)).where(
        exists(select(literal(1)).where(_rb.c.digest == _DIGEST))
        | exists(select(literal(1)).where(_mb.c.digest == _DIGEST))
    )
)


def _key(c: Candidate) -> dict[str, Any]:
    return {"kind": c.kind, "rid": c.repository_id, "digest": c.digest}


def _found(conn: Connection, statement: Prepared, c: Candidate) -> bool:
    return statement.first(conn, _key(c)) is not None


def _inline(work: Callable[[], None]) -> None:
    work()


class SqlGcStore(OrphanSql):
    def __init__(
        self,
        store: SqlMetadataStore,
        pace: Pace | None = None,
        writes_in: Callable[[Callable[[], None]], None] = _inline,
    ) -> None:
        """``pace``: batch length and duty cycle; default by database (:func:`default_pace`).
        ``writes_in(work)``: runs ``work`` (one of its write transactions over candidates) and
        returns once it is done; by default in the calling thread. A collector whose process
        runs at idle priority passes a thread that does not (moorage/priority.py): on SQLite a
        transaction holds the writer lock, and every push waits while the scheduler keeps an
        idle thread off the CPU (priority inversion)."""
        self._store = store
        self.pace = pace or default_pace(store._single_writer)
        self._writes_in = writes_in
        self._resume_at = 0.0
        self._since_checkpoint = 0
        # Set by a batch that ended early for a waiting writer (Pace.pause).
        self._cut_short = False

    def _wait_turn(self) -> None:
        # Between two of its transactions the collector steps aside (Pace): neither the writer
        # lock's mutex nor flock queues waiters in order, so it would otherwise take the lock
        # straight back and starve the pushes waiting for it.
        pause = self._resume_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    @contextmanager
    def _held(self, dry_run: bool) -> Iterator[Connection]:
        # The registry's own write transaction: on SQLite its writer lock and connection, so
        # the collector and requests take turns like any two writers.
        started = time.monotonic()
        self._cut_short = False
        try:
            # Not durable (no fsync at commit on SQLite, no wait for the WAL flush on
            # PostgreSQL): a commit lost with power is a batch rolled back, which docs/gc.md
            # shows safe (a blob row back without its bytes is unreachable and still queued).
            # Any later durable commit (a push) makes it durable too: the log is sequential.
            with self._store._write(durable=False) as conn:
                started = time.monotonic()  # the pause is for the time held, not waited
                yield conn
                if dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        finally:
            ended = time.monotonic()
            self._resume_at = ended + self.pace.pause(ended - started, self._cut_short)

    @contextmanager
    def _transaction(self, dry_run: bool) -> Iterator[Connection]:
        """One paced write transaction in the calling thread (the few outside the candidates'
        batches: retention, orphans)."""
        self._wait_turn()
        with self._held(dry_run) as conn:
            yield conn
        self._checkpoint()

    def _checkpoint(self) -> None:
        """On SQLite, copy the write-ahead log into the database now, outside the writer lock.

        SQLite checkpoints inside the commit that takes the log past ``wal_autocheckpoint``
        pages, fsyncs included: at its default of 1,000 a collector's commit did so about once
        in 20 (its deletes touch several indexes) and then held the writer for ~10 ms instead of
        ``batch_time``, which pushes waited out. (A server now checkpoints every 50 ms too,
        metadata/wal_checkpointer.py; this one still earns its place beside it: leaving the
        collector's pages to the server's thread, at the requests' priority, made the pushes no
        faster, bench/README.md, session 15.) A passive checkpoint here, between its
        transactions (every ``CHECKPOINT_EVERY`` transactions), keeps the log short so that its
        commits (and the pushes') rarely meet the threshold; it takes no writer lock, so pushes
        commit meanwhile. It runs in the calling thread, at the collector's own (idle) priority,
        not in ``writes_in``: its I/O and fsyncs then wait for the requests' (idle I/O class)."""
        if not self._store._single_writer:
            return
        self._since_checkpoint += 1
        if self._since_checkpoint < CHECKPOINT_EVERY:
            return
        self._store.checkpoint_log()
        self._since_checkpoint = 0

    def _each_in_transactions(
        self,
        candidates: Sequence[Candidate],
        dry_run: bool,
        review: Callable[[Connection, Candidate], None],
    ) -> None:
        """Run ``review`` on each candidate, several to a transaction: a transaction ends once
        it has held the writer for ``pace.batch_seconds``, or on SQLite as soon as another
        writer waits for it (a push then waits for one candidate and a commit, ~0.1 ms, not
        the rest of the batch), and the next one takes the remaining candidates. Each
        transaction reviews at least one, so a collection always progresses; under a steady
        stream of pushes it does less per wake, not more wakes (:meth:`Pace.pause`). Each
        transaction runs in ``writes_in``; the pauses and checkpoints between them in the
        calling thread."""
        remaining = list(reversed(candidates))
        store = self._store

        def batch() -> None:
            with self._held(dry_run) as conn:
                # From when it holds the writer: not the pause, nor the wait for the lock.
                deadline = time.monotonic() + self.pace.batch_seconds
                while remaining:
                    review(conn, remaining.pop())
                    if time.monotonic() > deadline:
                        break
                    if store.writers_waiting():
                        self._cut_short = True
                        break

        while remaining:
            self._wait_turn()
            self._writes_in(batch)
            self._checkpoint()

    @staticmethod
    def _lock_review(conn: Connection, c: Candidate) -> float | None:
        """Lock the review; its start of grace, or None if it is gone or busy."""
        value = _LOCK_REVIEW.scalar(conn, _key(c))
        return None if value is None else float(value)

    @staticmethod
    def _drop_review(conn: Connection, c: Candidate) -> None:
        _DROP_REVIEW.run(conn, _key(c))

    @staticmethod
    def _repository_name(conn: Connection, repository_id: int, cache: dict[int, str]) -> str:
        if repository_id not in cache:
            name = conn.execute(
                select(s.repositories.c.name).where(s.repositories.c.id == repository_id)
            ).scalar_one_or_none()
            cache[repository_id] = name or f"#{repository_id}"
        return cache[repository_id]

    # --- the queue ----------------------------------------------------------------------------
    def due(
        self, kind: str, due_before: float, after: Candidate | None, limit: int
    ) -> list[Candidate]:
        query = select(_r.c.repository_id, _r.c.digest).where(
            _r.c.kind == kind, _r.c.touched_at <= due_before
        )
        if after is not None:
            query = query.where(
                tuple_(_r.c.repository_id, _r.c.digest) > tuple_(after.repository_id, after.digest)
            )
        query = query.order_by(_r.c.repository_id, _r.c.digest).limit(limit)
        with self._store._read() as conn:
            rows = conn.execute(query).all()
        return [Candidate(kind, row.repository_id, row.digest) for row in rows]

    # --- manifests ------------------------------------------------------------------------------
    def collect_manifests(
        self,
        candidates: Sequence[Candidate],
        due_before: float,
        policy: ManifestPolicy,
        now: float,
        dry_run: bool,
    ) -> list[Collected]:
        collected: list[Collected] = []
        names: dict[int, str] = {}

        def review(conn: Connection, c: Candidate) -> None:
            touched = self._lock_review(conn, c)
            if touched is None or touched > due_before:
                return
            where = (_m.c.repository_id == c.repository_id) & (_m.c.digest == c.digest)
            row = conn.execute(
                select(
                    _m.c.id,
                    _m.c.subject_digest,
                    _m.c.created_at,
                    func.length(_m.c.payload).label("size"),
                )
                .where(where)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                if not one(conn, exists(select(literal(1)).where(where))):
                    self._drop_review(conn, c)  # deleted already
                return  # else busy: a request holds it
            repository = self._repository_name(conn, c.repository_id, names)
            if not self._manifest_is_garbage(conn, c, row, repository, policy, now):
                self._drop_review(conn, c)  # alive: queued again when that changes
                return
            gc_queue.remove_manifest(conn, c.repository_id, row.id, c.digest, now)
            self._drop_review(conn, c)
            collected.append(Collected(MANIFEST, c.digest, int(row.size), repository))

        self._each_in_transactions(candidates, dry_run, review)
        return collected

    @staticmethod
    def _manifest_is_garbage(
        conn: Connection,
        c: Candidate,
        row: Any,
        repository: str,
        policy: ManifestPolicy,
        now: float,
    ) -> bool:
        if not SqlGcStore._untagged_image(conn, c, row.id):
            return False  # tagged, or an image of an index that is still there
        if row.subject_digest is not None:
            subject = exists(
                select(literal(1)).where(
                    _m.c.repository_id == c.repository_id, _m.c.digest == row.subject_digest
                )
            )
            return policy.referrers and not one(conn, subject)
        age = policy.untagged_age(repository)
        return age is not None and row.created_at <= now - age

    # --- retention -----------------------------------------------------------------------------
    def tags(self) -> list[TagRecord]:
        query = select(
            s.repositories.c.name, _t.c.name.label("tag"), _m.c.digest, _t.c.updated_at
        ).select_from(
            _t.join(_m, _m.c.id == _t.c.manifest_id).join(
                s.repositories, s.repositories.c.id == _t.c.repository_id
            )
        )
        with self._store._read() as conn:
            rows = conn.execute(query).all()
        return [TagRecord(row.name, row.tag, row.digest, float(row.updated_at)) for row in rows]

    def remove_tags(self, tags: Sequence[TagRecord], now: float, dry_run: bool) -> list[Collected]:
        collected: list[Collected] = []
        with self._transaction(dry_run) as conn:
            for record in tags:
                found = conn.execute(
                    select(_m.c.id, _m.c.repository_id, func.length(_m.c.payload).label("size"))
                    .select_from(_m.join(s.repositories, s.repositories.c.id == _m.c.repository_id))
                    .where(s.repositories.c.name == record.repository, _m.c.digest == record.digest)
                ).first()
                if found is None:
                    continue
                # Only if the tag was not pushed again since the rules looked at it.
                removed = conn.execute(
                    delete(_t).where(
                        _t.c.repository_id == found.repository_id,
                        _t.c.name == record.tag,
                        _t.c.manifest_id == found.id,
                        _t.c.updated_at == record.pushed_at,
                    )
                )
                if removed.rowcount == 0:
                    continue
                collected.append(
                    Collected("tag", record.digest, 0, record.repository, tag=record.tag)
                )
                candidate = Candidate(MANIFEST, found.repository_id, record.digest)
                if self._untagged_image(conn, candidate, found.id):
                    gc_queue.remove_manifest(
                        conn, found.repository_id, found.id, record.digest, now
                    )
                    collected.append(
                        Collected(MANIFEST, record.digest, int(found.size), record.repository)
                    )
        return collected

    @staticmethod
    def _untagged_image(conn: Connection, c: Candidate, manifest_id: int) -> bool:
        """No tag left on it and no index of its repository listing it."""
        if one(conn, exists(select(literal(1)).where(_t.c.manifest_id == manifest_id))):
            return False
        parent = (
            select(literal(1))
            .select_from(_mc.join(_m, _m.c.id == _mc.c.manifest_id))
            .where(_m.c.repository_id == c.repository_id, _mc.c.child_digest == c.digest)
        )
        return not one(conn, exists(parent))

    def enqueue_untagged(self, policy: ManifestPolicy, now: float) -> int:
        untagged = (
            select(_m.c.repository_id, s.repositories.c.name, _m.c.digest, _m.c.created_at)
            .select_from(_m.join(s.repositories, s.repositories.c.id == _m.c.repository_id))
            .where(
                ~exists(select(literal(1)).where(_t.c.manifest_id == _m.c.id)),
                _m.c.subject_digest.is_(None),
            )
        )
        with self._store._read() as conn:
            rows = conn.execute(untagged).all()
        old: dict[int, list[str]] = {}
        for row in rows:
            age = policy.untagged_age(row.name)
            if age is not None and row.created_at <= now - age:
                old.setdefault(row.repository_id, []).append(row.digest)
        # Due at once: the rule's age is the grace here (checked again at review).
        return self._enqueue_missing(MANIFEST, old, 0.0)

    def _enqueue_missing(self, kind: str, digests: dict[int, list[str]], touched_at: float) -> int:
        count = 0
        for repository_id, found in digests.items():
            for batch in _batches(found):
                with self._store._write() as conn:
                    gc_queue.enqueue_if_absent(conn, kind, repository_id, batch, touched_at)
                count += len(batch)
        return count

    # --- links ----------------------------------------------------------------------------------
    def collect_links(
        self, candidates: Sequence[Candidate], due_before: float, now: float, dry_run: bool
    ) -> list[Collected]:
        collected: list[Collected] = []
        names: dict[int, str] = {}

        def review(conn: Connection, c: Candidate) -> None:
            touched = self._lock_review(conn, c)
            if touched is None or touched > due_before:
                return
            # Locked before the reference check: a manifest PUT share-locks the links it relies
            # on, so either it committed (and the check sees its manifest), or it holds the lock
            # (skipped here), or it will find the link gone.
            if not _found(conn, _LOCK_LINK, c):
                if not _found(conn, _LINK_EXISTS, c):
                    self._drop_review(conn, c)
                return
            if _found(conn, _REFERENCED_IN_REPOSITORY, c):
                self._drop_review(conn, c)  # in use: queued again when its manifest goes
                return
            _DELETE_LINK.run(conn, _key(c))
            self._drop_review(conn, c)
            # Perhaps the blob's last link: due at once (no client can reach it by a link).
            gc_queue.enqueue_blob(conn, c.digest)
            size = _BLOB_SIZE.scalar(conn, _key(c))
            repository = self._repository_name(conn, c.repository_id, names)
            collected.append(Collected(LINK, c.digest, int(size or 0), repository))
            if dry_run and not _found(conn, _BLOB_IN_USE, c):
                collected.append(Collected(BLOB, c.digest, int(size or 0)))

        self._each_in_transactions(candidates, dry_run, review)
        return collected

    # --- blobs ----------------------------------------------------------------------------------
    def collect_blobs(
        self, candidates: Sequence[Candidate], delete_bytes: DeleteBytes, dry_run: bool
    ) -> list[Collected]:
        collected: list[Collected] = []

        def review(conn: Connection, c: Candidate) -> None:
            if self._lock_review(conn, c) is None:
                return
            row = _LOCK_BLOB.first(conn, _key(c))
            if row is None:
                if not _found(conn, _BLOB_EXISTS, c):
                    self._drop_review(conn, c)
                return  # else a push holds the row: it is linking it
            if _found(conn, _BLOB_IN_USE, c):
                self._drop_review(conn, c)
                return
            _DELETE_BLOB.run(conn, _key(c))
            self._drop_review(conn, c)
            # The bytes go inside the transaction, after the row's deletion: a push of this
            # digest that found the bytes before now waits for the row (it is locked) and, once
            # this commits, finds them gone (services.blobs.confirm_stored); a crash before the
            # commit brings the row back, unreachable (no link) and still queued.
            size, location = row
            if not dry_run:
                delete_bytes(c.digest, location)
            collected.append(Collected(BLOB, c.digest, int(size)))

        self._each_in_transactions(candidates, dry_run, review)
        return collected

    # --- the full sweep -----------------------------------------------------------------------
    def enqueue_unreferenced(self, now: float) -> int:
        link_queued = exists(
            select(literal(1)).where(
                _r.c.kind == LINK,
                _r.c.repository_id == _rb.c.repository_id,
                _r.c.digest == _rb.c.digest,
            )
        )
        link_used = exists(
            select(literal(1))
            .select_from(_mb.join(_m, _m.c.id == _mb.c.manifest_id))
            .where(_m.c.repository_id == _rb.c.repository_id, _mb.c.digest == _rb.c.digest)
        )
        links = select(_rb.c.repository_id, _rb.c.digest).where(~link_used, ~link_queued)
        blob_queued = exists(
            select(literal(1)).where(
                _r.c.kind == BLOB, _r.c.repository_id == 0, _r.c.digest == _b.c.digest
            )
        )
        blobs = select(literal(0).label("repository_id"), _b.c.digest).where(
            ~exists(select(literal(1)).where(_rb.c.digest == _b.c.digest)),
            ~exists(select(literal(1)).where(_mb.c.digest == _b.c.digest)),
            ~blob_queued,
        )
        subject = _m.alias("subject")
        referrers = select(_m.c.repository_id, _m.c.digest).where(
            _m.c.subject_digest.is_not(None),
            ~exists(
                select(literal(1)).where(
                    subject.c.repository_id == _m.c.repository_id,
                    subject.c.digest == _m.c.subject_digest,
                )
            ),
            ~exists(
                select(literal(1)).where(
                    _r.c.kind == MANIFEST,
                    _r.c.repository_id == _m.c.repository_id,
                    _r.c.digest == _m.c.digest,
                )
            ),
        )
        count = 0
        # Links start their grace now (nobody knows when a client last saw them); blobs with
        # no link are due at once; referrers of a missing subject get the grace too (a
        # subject may be pushed after its referrers).
        for kind, query, touched_at in (
            (LINK, links, now),
            (BLOB, blobs, 0.0),
            (MANIFEST, referrers, now),
        ):
            with self._store._read() as conn:
                rows = conn.execute(query).all()
            grouped: dict[int, list[str]] = {}
            for row in rows:
                grouped.setdefault(row.repository_id, []).append(row.digest)
            count += self._enqueue_missing(kind, grouped, touched_at)
        return count
