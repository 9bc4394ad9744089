"""The MetadataStore on SQLAlchemy Core: SQLite (embedded default, WAL) or PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from moorage.errors import ErrorCode, RegistryError
from moorage.events import cloudevents as ce
from moorage.metadata import gc_queue
from moorage.metadata import schema as s
from moorage.metadata.conflicts import retry_conflicts
from moorage.metadata.outbox import OutboxWriter
from moorage.metadata.port import TagTaken, UploadBusy
from moorage.metadata.prepared import Prepared
from moorage.metadata.records import (
    ENDED_OFFSET,
    BlobRecord,
    Inventory,
    ManifestRecord,
    ManifestReferences,
    ReferrerRecord,
    UploadSession,
)
from moorage.metadata.usage import Quota
from moorage.metadata.usage_sql import (
    enforce_quota,
    lock_for_quota,
    manifest_stored,
    read_snapshot,
)
from moorage.metadata.wal_checkpointer import AUTOCHECKPOINT_PAGES
from moorage.metadata.writer_lock import WriterLock

# Query parameters per IN (...) list, below SQLite's and PostgreSQL's limits.
_IN_BATCH = 500


_WRITE_OPTION = "moorage_write"


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite (its implicit BEGINs break SAVEPOINTs);
    # _begin_sqlite_transaction below issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # FULL makes every commit durable before the client is told its push succeeded; foreign
    # keys make deletes cascade. (WAL is set once per database file in make_engine: setting it
    # on every new connection takes a lock and stalled concurrent writers.)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A commit copies the log into the database itself only past this backstop; the servers'
    # WalCheckpointer threads copy it long before, outside the writer lock.
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()


def _begin_sqlite_transaction(conn: Connection) -> None:
    # A write transaction takes the write lock up front (BEGIN IMMEDIATE, waiting up to
    # busy_timeout): a deferred one that reads first would fail with SQLITE_BUSY instead of
    # waiting when another writer commits between its read and its first write.
    # Reads issue no BEGIN at all: each SELECT is its own consistent snapshot, and skipping the
    # BEGIN/ROLLBACK pair halves the cost of the hot read paths (manifest GET, blob HEAD).
    # Straight to the driver: SQLAlchemy's execution costs several times the BEGIN's own
    # (metadata/prepared.py), once per write transaction.
    if conn.get_execution_options().get(_WRITE_OPTION, False):
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("BEGIN IMMEDIATE")


# Connections are checked out per read or write transaction, never pinned, so the pool bounds
# concurrent queries only. A request that cannot get one within the pool timeout is answered
# 503 (with Retry-After) instead of holding its worker thread for SQLAlchemy's default 30 s.
# The defaults of database.pool_size / max_overflow / pool_timeout (config.DatabaseSettings).
POOL_SIZE = 16
POOL_OVERFLOW = 32
POOL_TIMEOUT_SECONDS = 5.0


@contextmanager
def _unavailable_on_pool_timeout() -> Iterator[None]:
    """An exhausted pool, and a database that cannot be reached, are 503 UNAVAILABLE with
    Retry-After, not a 500: the request may succeed on retry, and behind a load balancer
    (docs/deploy/nginx-cluster.conf: `proxy_next_upstream http_503`) on another node at once."""
    try:
        yield
    except PoolTimeout:
        raise RegistryError(
            ErrorCode.UNAVAILABLE,
            "the metadata database is busy; try again",
            headers={"Retry-After": "1"},
        ) from None
    except DBAPIError as error:
        # No statement: connecting failed. Invalidated: the connection was lost mid-use. Any
        # other database error is a bug or a conflict, and stays what it is.
        if error.statement is not None and not error.connection_invalidated:
            raise
        raise RegistryError(
            ErrorCode.UNAVAILABLE,
            "the metadata database cannot be reached; try again",
            headers={"Retry-After": "1"},
        ) from None


def make_engine(
    url: str,
    pool_timeout: float = POOL_TIMEOUT_SECONDS,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = POOL_OVERFLOW,
    pgbouncer: bool = False,
) -> Engine:
    """An engine configured for the registry's access pattern on SQLite or PostgreSQL.

    ``pgbouncer``: the server is PgBouncer in transaction pooling mode, so no statement is
    prepared on the server (psycopg prepares one after 5 runs; the next transaction may get
    another server connection, which does not have it). Nothing else here outlives a
    transaction: locks are row locks or ``pg_advisory_xact_lock``, settings are ``SET LOCAL``,
    and there is no LISTEN or temporary table.
    """
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if url.startswith("sqlite"):
        engine = create_engine(url, **pool)
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        # WAL lets readers run while one writer commits; the mode is stored in the file.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        return engine
    connect_args = {"prepare_threshold": None} if pgbouncer else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)


# Hot-path statements are built once: constructing a SQLAlchemy expression costs more than
# running the query on SQLite. Those a small push runs are Prepared: through the driver on
# SQLite, where SQLAlchemy's work per execution cost more than the statement (prepared.py).
_REPOSITORY_ID = Prepared(
    select(s.repositories.c.id).where(s.repositories.c.name == bindparam("name"))
)
_BLOB = Prepared(
    select(s.blobs.c.size, s.blobs.c.location).where(s.blobs.c.digest == bindparam("digest"))
)
_REPOSITORY_BLOBS = s.repositories.join(
    s.repository_blobs, s.repository_blobs.c.repository_id == s.repositories.c.id
).join(s.blobs, s.blobs.c.digest == s.repository_blobs.c.digest)
_UPLOAD = Prepared(
    select(s.uploads).where(
        s.uploads.c.id == bindparam("upload_id"), s.uploads.c.repository == bindparam("repo_name")
    )
)
# A claim takes a live session whose lease is free, expired, or exactly ``replacing`` (a dead
# holder's, taken over); an ended session's row is never claimed.
_CLAIM_UPLOAD = (
    update(s.uploads)
    .where(
        s.uploads.c.id == bindparam("upload_id"),
        s.uploads.c.repository == bindparam("repo_name"),
        s.uploads.c.offset != ENDED_OFFSET,
        s.uploads.c.lease_until.is_(None)
        | (s.uploads.c.lease_until < bindparam("now"))
        | (s.uploads.c.lease_until == bindparam("replacing")),
    )
    .values(lease_until=bindparam("until"), lease_holder=bindparam("holder"))
)
# Records progress (or ends the session: offset ENDED_OFFSET) and drops the lease, only while
# the lease is still ``token`` (the fencing, services/leases.py).
_RELEASE_UPLOAD = (
    update(s.uploads)
    .where(s.uploads.c.id == bindparam("upload_id"), s.uploads.c.lease_until == bindparam("token"))
    .values(
        offset=bindparam("to_offset"),
        hash_state=bindparam("to_state"),
        lease_until=None,
        lease_holder=None,
        updated_at=bindparam("now"),
    )
)
# The same, adding the claim whose append this was to the session's recorded appends.
_RELEASE_UPLOAD_APPENDING = _RELEASE_UPLOAD.values(
    appends=func.coalesce(s.uploads.c.appends, "") + " " + bindparam("append")
)
# Ends the session this lease holds. Its row is kept as long as its id is valid, no longer:
# last changed at the id's own opening time, it expires exactly when the id does.
_ENDED_VALUES = {
    "offset": ENDED_OFFSET,
    "hash_state": b"",
    "lease_until": None,
    "lease_holder": None,
    "updated_at": s.uploads.c.created_at,
}
_END_HELD_UPLOAD = (
    update(s.uploads)
    .where(s.uploads.c.id == bindparam("upload_id"), s.uploads.c.lease_until == bindparam("token"))
    .values(_ENDED_VALUES)
)
# Ends a session nobody holds, at the offset its caller read (UploadService.complete_unheld).
_END_UNLEASED_UPLOAD = Prepared(
    update(s.uploads)
    .where(
        s.uploads.c.id == bindparam("upload_id"),
        s.uploads.c.repository == bindparam("repo_name"),
        s.uploads.c.offset == bindparam("at_offset"),
        s.uploads.c.lease_until.is_(None),
    )
    .values(_ENDED_VALUES)
)
# With the link's pending garbage-collection review, if any: a HEAD (or mount) of a link that
# is a candidate moves its review forward (SqlMetadataStore.linked_blob).
_LINKED_BLOB = (
    select(
        s.blobs.c.size,
        s.blobs.c.location,
        s.repository_blobs.c.repository_id,
        s.gc_reviews.c.touched_at,
    )
    .select_from(
        _REPOSITORY_BLOBS.outerjoin(
            s.gc_reviews,
            and_(
                s.gc_reviews.c.kind == literal_column(f"'{gc_queue.LINK}'"),
                s.gc_reviews.c.repository_id == s.repository_blobs.c.repository_id,
                s.gc_reviews.c.digest == s.repository_blobs.c.digest,
            ),
        )
    )
    .where(
        s.repositories.c.name == bindparam("repository"),
        s.repository_blobs.c.digest == bindparam("digest"),
    )
)
_LINKED_BLOB_SIZES = (
    select(s.blobs.c.digest, s.blobs.c.size)
    .select_from(_REPOSITORY_BLOBS)
    .where(
        s.repositories.c.name == bindparam("repository"),
        s.repository_blobs.c.digest.in_(bindparam("digests", expanding=True)),
    )
)
_MANIFEST_COLUMNS = (
    s.manifests.c.digest,
    s.manifests.c.media_type,
    s.manifests.c.payload,
    s.manifests.c.artifact_type,
    s.manifests.c.subject_digest,
    s.manifests.c.annotations,
)
_REPOSITORY_MANIFESTS = s.repositories.join(
    s.manifests, s.manifests.c.repository_id == s.repositories.c.id
)
# length() of a binary value counts bytes on SQLite (BLOB) and PostgreSQL (bytea) alike.
_MANIFEST_SIZES = (
    select(s.manifests.c.digest, func.length(s.manifests.c.payload).label("size"))
    .select_from(_REPOSITORY_MANIFESTS)
    .where(
        s.repositories.c.name == bindparam("repository"),
        s.manifests.c.digest.in_(bindparam("digests", expanding=True)),
    )
)
_MANIFEST_BY_DIGEST = (
    select(*_MANIFEST_COLUMNS)
    .select_from(_REPOSITORY_MANIFESTS)
    .where(
        s.repositories.c.name == bindparam("repository"),
        s.manifests.c.digest == bindparam("reference"),
    )
)
_MANIFEST_BY_TAG = (
    select(*_MANIFEST_COLUMNS)
    .select_from(_REPOSITORY_MANIFESTS.join(s.tags, s.tags.c.manifest_id == s.manifests.c.id))
    .where(
        s.repositories.c.name == bindparam("repository"),
        s.tags.c.name == bindparam("reference"),
    )
)


def _batches(values: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for value in values:
        batch.append(value)
        if len(batch) == _IN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _session(row: Any) -> UploadSession:
    return UploadSession(
        id=row.id,
        repository=row.repository,
        algorithm=row.algorithm,
        offset=row.offset,
        hash_state=bytes(row.hash_state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        appends=None if row.appends is None else tuple(row.appends.split()),
    )


class SqlMetadataStore:
    """A :class:`~moorage.metadata.port.MetadataStore` over an SQLAlchemy engine."""

    def __init__(
        self,
        engine: Engine,
        observe_transaction: Callable[[float], None] | None = None,
        gc_touch_after: float = 360.0,
        outbox: OutboxWriter | None = None,
    ) -> None:
        """``observe_transaction`` is called with each write transaction's seconds (the
        metrics' latency histogram). ``gc_touch_after``: a read of a blob link that is a
        garbage-collection candidate (blob HEAD or GET, a mount's source) restarts the link's
        grace period when it last started longer ago than this (a tenth of ``gc.grace``: a
        write at most that often per link, and at least 90% of the grace left after any
        HEAD). ``outbox``: where changes write their events (None: events are off)."""
        self.engine = engine
        self.outbox = outbox
        self._observe_transaction = observe_transaction
        self._gc_touch_after = gc_touch_after
        # INSERT ... ON CONFLICT DO NOTHING, in each database's own syntax: idempotent links
        # without a savepoint per statement.
        dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert_ignore = {
            table: dialect_insert(table).on_conflict_do_nothing()
            for table in (
                s.repositories,
                s.blobs,
                s.repository_blobs,
                s.manifests,
                s.manifest_blobs,
                s.manifest_children,
                s.tags,
            )
        }
        # RETURNING: whether the row was created (rowcount is -1 here on PostgreSQL).
        self._create_upload = Prepared(
            dialect_insert(s.uploads).on_conflict_do_nothing().returning(s.uploads.c.id)
        )
        # Ends a session, whether or not it had a row yet (services/upload_ids.py).
        end_upload = dialect_insert(s.uploads)
        self._end_upload_row = Prepared(
            end_upload.on_conflict_do_update(
                index_elements=[s.uploads.c.id],
                set_={
                    "offset": end_upload.excluded.offset,
                    "hash_state": end_upload.excluded.hash_state,
                    "lease_until": None,
                    "lease_holder": None,
                    "updated_at": end_upload.excluded.updated_at,
                },
            )
        )
        # Creates the blob row, or takes its row lock (a no-op update) when it exists: a link
        # made while the collector deletes the row then waits for it and re-creates the row
        # (instead of linking a row about to vanish). See docs/gc.md.
        self._lock_blob = Prepared(
            dialect_insert(s.blobs).on_conflict_do_update(
                index_elements=[s.blobs.c.digest], set_={"size": s.blobs.c.size}
            )
        )
        upsert_blob = dialect_insert(s.blobs)
        self._upsert_blob = Prepared(
            upsert_blob.on_conflict_do_update(
                index_elements=[s.blobs.c.digest], set_={"location": upsert_blob.excluded.location}
            )
        )
        # The blob push's link (every column given: prepared.py).
        self._link = Prepared(self._insert_ignore[s.repository_blobs])
        upsert_tag = dialect_insert(s.tags)
        self._upsert_tag = upsert_tag.on_conflict_do_update(
            index_elements=[s.tags.c.repository_id, s.tags.c.name],
            set_={
                "manifest_id": upsert_tag.excluded.manifest_id,
                "updated_at": upsert_tag.excluded.updated_at,
            },
        )
        # SQLite has one writer at a time, so writers take turns on a WriterLock (no busy-handler
        # polling) and this process's writers share one connection (a pool checkout per
        # transaction cost more than its statements). PostgreSQL uses the pool.
        self._single_writer = engine.dialect.name == "sqlite"
        database = engine.url.database
        file_backed = self._single_writer and database not in (None, "", ":memory:")
        self.file_backed_sqlite = file_backed
        self._write_lock = WriterLock(Path(database) if file_backed and database else None)
        self._writer: Connection | None = None
        self._writer_durable = True
        # SQLite reads: each thread keeps one connection of its own for good, outside the
        # pool (checking one out per read cost ~15% of a manifest GET, and pinning pool
        # connections to more threads than the pool holds stalled requests). SQLite connections
        # are cheap and threads are few (the thread limiter's 40 and the event loop).
        self._read_engine: Engine | None = None
        if file_backed:
            self._read_engine = create_engine(engine.url, poolclass=NullPool)
            event.listen(self._read_engine, "connect", _enable_sqlite_pragmas)
        self._local = threading.local()

    # --- helpers -----------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for one read. On SQLite, this thread's own (outside the pool, so it
        never waits for one). Otherwise a pooled connection returned right after: never pinned,
        since pinning one per thread outgrew the pool and stalled requests for the pool's
        timeout; an exhausted pool is 503 UNAVAILABLE within POOL_TIMEOUT_SECONDS."""
        if self._read_engine is None:
            with _unavailable_on_pool_timeout(), self.engine.connect() as conn:
                yield conn
            return
        mine: Connection | None = getattr(self._local, "conn", None)
        if mine is None or mine.closed or mine.invalidated:
            mine = self._local.conn = self._read_engine.connect()
        try:
            yield mine
        finally:
            try:
                mine.rollback()  # ends SQLAlchemy's bookkeeping; SQLite saw no BEGIN for a read
            except Exception:
                self._local.conn = None  # unusable: the next read opens a new one
                mine.invalidate()

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on error,
        timed (waiting for the writer included) when an observer was given."""
        observe = self._observe_transaction
        if observe is None:
            with self._transaction(durable) as conn:
                yield conn
            return
        start = time.perf_counter()
        try:
            with self._transaction(durable) as conn:
                yield conn
        finally:
            observe(time.perf_counter() - start)

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on error.

        ``durable=False`` is for what no answer to a client rests on alone: upload leases (a
        claim, a renewal, the row a first PATCH creates before its bytes, made durable by that
        request's own durable record of progress) and grace restarts. Such a commit survives a
        crash of the process and is made durable by the next durable commit of anyone; only a
        power failure before that can lose it."""
        if not self._single_writer:
            with _unavailable_on_pool_timeout(), self.engine.connect() as conn, conn.begin():
                if not durable:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn
            return
        with self._write_lock:
            writer = self._writer
            if writer is None or writer.closed or writer.invalidated:
                with _unavailable_on_pool_timeout():
                    writer = self._writer = self.engine.connect()
                writer.execution_options(**{_WRITE_OPTION: True})
                self._writer_durable = True
            if durable != self._writer_durable:
                # In WAL mode NORMAL skips the fsync at commit; it cannot change mid-transaction.
                # Straight to the driver: SQLAlchemy would open a transaction around it.
                raw = writer.connection.dbapi_connection
                assert raw is not None
                raw.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._writer_durable = durable
            with writer.begin():
                yield writer

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read connection whose SELECTs all see one snapshot (reports of many queries)."""
        with self._read() as conn, read_snapshot(conn):
            yield conn

    def checkpoint_log(self) -> None:
        """On SQLite, a passive checkpoint: copy into the database what of the write-ahead log
        no reader still needs, waiting for nobody (writers go on committing; a checkpoint that
        another connection runs at that moment makes this one a no-op)."""
        if not self._single_writer:
            return
        with self._read() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def writers_waiting(self) -> bool:
        """On SQLite, whether another writer waits for the one in progress (meant for the
        holder: the collector ends its transaction early then). Elsewhere False: PostgreSQL
        writers wait only for the rows they share."""
        return self._single_writer and self._write_lock.others_waiting()

    def transaction(self) -> AbstractContextManager[Connection]:
        """A durable write transaction under the writer lock, for SQL kept in other modules
        (:mod:`moorage.metadata.usage_sql`)."""
        return self._write()

    @staticmethod
    def _repository_id(conn: Connection, name: str) -> int | None:
        repository_id: int | None = _REPOSITORY_ID.scalar(conn, {"name": name})
        return repository_id

    def _ensure_repository(self, conn: Connection, name: str) -> int:
        repository_id = self._repository_id(conn, name)
        if repository_id is None:  # first push to it (or a concurrent first push)
            conn.execute(
                self._insert_ignore[s.repositories], {"name": name, "created_at": time.time()}
            )
            repository_id = self._repository_id(conn, name)
            assert repository_id is not None
        return repository_id

    # --- blobs -------------------------------------------------------------------------------
    def link_blob(
        self, repository: str, digest: str, size: int, ending: UploadSession | None = None
    ) -> None:
        with self._write() as conn:
            self._link_blob(conn, repository, digest, size, None, replace=False)
            if ending is not None:
                self._end_upload(conn, ending)

    def store_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        location: str | None,
        ending: UploadSession | None = None,
    ) -> None:
        with self._write() as conn:
            self._link_blob(conn, repository, digest, size, location, replace=True)
            if ending is not None:
                self._end_upload(conn, ending)

    def _link_blob(
        self,
        conn: Connection,
        repository: str,
        digest: str,
        size: int,
        location: str | None,
        *,
        replace: bool,
    ) -> None:
        """Record the blob (at ``location`` when new; also when it exists, if ``replace``)
        and link it to the repository."""
        now = time.time()
        repository_id = self._ensure_repository(conn, repository)
        # A new link has no manifest yet: it is garbage if none comes within the grace period.
        # Queued first (lock order: review, blob, link, as the collector takes them).
        gc_queue.enqueue(conn, gc_queue.LINK, repository_id, (digest,), now)
        row = {"digest": digest, "size": size, "created_at": now, "location": location}
        (self._upsert_blob if replace else self._lock_blob).run(conn, row)
        self._link.run(conn, {"repository_id": repository_id, "digest": digest, "created_at": now})

    def blob(self, digest: str) -> BlobRecord | None:
        with self._read() as conn:
            row = _BLOB.first(conn, {"digest": digest})  # the primary key: one row or none
        return None if row is None else BlobRecord(int(row.size), row.location)

    def linked_blob(self, repository: str, digest: str) -> BlobRecord | None:
        for _ in range(2):
            with self._read() as conn:
                row = conn.execute(
                    _LINKED_BLOB, {"repository": repository, "digest": digest}
                ).one_or_none()
            if row is None:
                return None
            now = time.time()
            # Read first, write rarely: only a candidate whose grace started a while ago.
            if row.touched_at is None or row.touched_at >= now - self._gc_touch_after:
                return BlobRecord(int(row.size), row.location)
            if self._touch_link(row.repository_id, digest, now):
                return BlobRecord(int(row.size), row.location)
            # The collector reviewed the link since the read: look again (it may be gone).
        # Reviewed twice under our feet: say it is absent (the client uploads it again) rather
        # than promise a link nothing protects.
        return None

    def _touch_link(self, repository_id: int, digest: str, now: float) -> bool:
        """Restart the grace of a link under review; False if the review is gone (the
        collector took it, in the same transaction as any delete of the link)."""
        r = s.gc_reviews
        # Not forced to disk: a touch lost with power only shortens a grace period, and this
        # may run on the event loop (a blob HEAD on SQLite is an inline point read).
        with self._write(durable=False) as conn:
            result = conn.execute(
                update(r)
                .where(
                    r.c.kind == gc_queue.LINK,
                    r.c.repository_id == repository_id,
                    r.c.digest == digest,
                )
                .values(touched_at=now)
            )
            return result.rowcount > 0

    def blob_sizes(self, repository: str, digests: Collection[str]) -> dict[str, int]:
        return self._sizes(_LINKED_BLOB_SIZES, repository, digests)

    def _sizes(self, query: Any, repository: str, digests: Collection[str]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        with self._read() as conn:
            for batch in _batches(digests):
                rows = conn.execute(query, {"repository": repository, "digests": batch})
                sizes.update((row.digest, int(row.size)) for row in rows)
        return sizes

    def unlink_blob(self, repository: str, digest: str) -> bool:
        with self._write() as conn:
            repository_id = self._repository_id(conn, repository)
            if repository_id is None:
                return False
            result = conn.execute(
                delete(s.repository_blobs).where(
                    s.repository_blobs.c.repository_id == repository_id,
                    s.repository_blobs.c.digest == digest,
                )
            )
            if result.rowcount == 0:
                return False
            # Perhaps its last link; no client can be told it exists through a link any more,
            # so it is due at once (the collector still checks every reference).
            gc_queue.enqueue(conn, gc_queue.BLOB, 0, (digest,), 0.0)
            return True

    # --- manifests and tags --------------------------------------------------------------------
    def put_manifest(
        self,
        repository: str,
        manifest: ManifestRecord,
        references: ManifestReferences,
        tags: list[str],
        keep_tags: bool = False,
        quota: Quota | None = None,
    ) -> list[str]:
        # The manifest's own row is locked against the collector (_claim_manifest); other
        # concurrent changes (a repository delete, a collection of the same rows) can still
        # abort the transaction on PostgreSQL: it is tried again, never a 500.
        return retry_conflicts(
            lambda: self._put_manifest(repository, manifest, references, tags, keep_tags, quota),
            "the manifest push",
        )

    def _put_manifest(
        self,
        repository: str,
        manifest: ManifestRecord,
        references: ManifestReferences,
        tags: list[str],
        keep_tags: bool,
        quota: Quota | None,
    ) -> list[str]:
        now = time.time()
        with self._write() as conn:
            repository_id = self._ensure_repository(conn, repository)
            # Whether the push adds bytes is asked before the insert: an ON CONFLICT DO
            # NOTHING's rowcount is -1 on PostgreSQL.
            had_manifest = False
            if quota is not None:
                lock_for_quota(conn, repository_id)
                had_manifest = manifest_stored(conn, repository_id, manifest.digest)
            # Checked inside the write transaction, with the rows share-locked on PostgreSQL
            # (SQLite has one writer at a time): a blob or child deleted concurrently can
            # never leave this manifest pointing at nothing.
            required = set(references.blobs) - set(references.foreign_blobs)
            missing = sorted(
                self._absent(conn, s.repository_blobs.c.digest, repository_id, required)
            ) + sorted(
                self._absent(conn, s.manifests.c.digest, repository_id, set(references.manifests))
            )
            if missing:
                return missing
            manifest_id = self._claim_manifest(conn, repository_id, manifest, now)
            if references.blobs:
                conn.execute(
                    self._insert_ignore[s.manifest_blobs],
                    [{"manifest_id": manifest_id, "digest": d} for d in set(references.blobs)],
                )
            if references.manifests:
                conn.execute(
                    self._insert_ignore[s.manifest_children],
                    [
                        {"manifest_id": manifest_id, "child_digest": d}
                        for d in set(references.manifests)
                    ],
                )
            if quota is not None:  # raising QuotaExceeded rolls the push back whole
                enforce_quota(conn, repository_id, quota, new_manifest=not had_manifest, tags=tags)
            if self.outbox is not None:  # a TagTaken below rolls the event back with the push
                self.outbox.record(
                    conn,
                    ce.MANIFEST_PUSHED,
                    repository,
                    f"{repository}@{manifest.digest}",
                    {
                        "digest": manifest.digest,
                        "mediaType": manifest.media_type,
                        "size": len(manifest.payload),
                        "tags": sorted(set(tags)),
                    },
                )
            rows = [
                {"repository_id": repository_id, "name": tag, "manifest_id": manifest_id}
                for tag in tags
            ]
            if not keep_tags:
                for row in rows:
                    conn.execute(self._upsert_tag, {**row, "updated_at": now})
                return []
            # Insert what is new and leave the rest; then any tag naming another manifest was
            # there first (or won a concurrent insert): raising rolls this push back whole.
            for row in rows:
                conn.execute(self._insert_ignore[s.tags], {**row, "updated_at": now})
            taken = conn.execute(
                select(s.tags.c.name).where(
                    s.tags.c.repository_id == repository_id,
                    s.tags.c.name.in_(tags),
                    s.tags.c.manifest_id != manifest_id,
                )
            ).scalars()
            moved = sorted(taken)
            if moved:
                raise TagTaken(moved)
        return []

    def _claim_manifest(
        self, conn: Connection, repository_id: int, manifest: ManifestRecord, now: float
    ) -> int:
        """The manifest's row id, inserting the row unless it exists, with the row key-share-
        locked until the push commits (PostgreSQL; SQLite has one writer at a time).

        An insert, not a select-then-insert, so two pushes of one manifest at once both succeed
        (ON CONFLICT DO NOTHING). The lock is what the garbage collector takes into account: it
        deletes an untagged manifest under FOR UPDATE SKIP LOCKED, so it skips a row a push
        holds; and a push that meets a row the collector holds waits for it, and once the
        collector commits the delete, finds no row and inserts it anew. Without the lock the
        push went on with the old id and its tag insert failed on the foreign key (a 500)."""
        row = {
            "repository_id": repository_id,
            "digest": manifest.digest,
            "media_type": manifest.media_type,
            "artifact_type": manifest.artifact_type,
            "subject_digest": manifest.subject,
            "annotations": json.dumps(manifest.annotations) if manifest.annotations else None,
            "payload": manifest.payload,
            "created_at": now,
        }
        claim = (
            select(s.manifests.c.id)
            .where(
                s.manifests.c.repository_id == repository_id,
                s.manifests.c.digest == manifest.digest,
            )
            .with_for_update(read=True, key_share=True)
        )
        while True:  # again only after a concurrent delete of the row: the next insert wins
            conn.execute(self._insert_ignore[s.manifests], row)
            manifest_id: int | None = conn.execute(claim).scalar_one_or_none()
            if manifest_id is not None:
                return manifest_id

    @staticmethod
    def _absent(
        conn: Connection, digest_column: Any, repository_id: int, digests: set[str]
    ) -> set[str]:
        """Those of ``digests`` with no row in ``digest_column``'s table for the repository,
        share-locking the rows found until the transaction ends."""
        found: set[str] = set()
        repository_column = digest_column.table.c.repository_id
        for batch in _batches(digests):
            query = (
                select(digest_column)
                .where(repository_column == repository_id, digest_column.in_(batch))
                .with_for_update(read=True)
            )
            found.update(conn.execute(query).scalars())
        return digests - found

    def get_manifest(
        self, repository: str, reference: str, by_digest: bool
    ) -> ManifestRecord | None:
        query = _MANIFEST_BY_DIGEST if by_digest else _MANIFEST_BY_TAG
        with self._read() as conn:
            row = conn.execute(query, {"repository": repository, "reference": reference}).first()
        if row is None:
            return None
        return ManifestRecord(
            digest=row.digest,
            media_type=row.media_type,
            payload=bytes(row.payload),
            artifact_type=row.artifact_type,
            subject=row.subject_digest,
            annotations=json.loads(row.annotations) if row.annotations else {},
        )

    def manifest_sizes(self, repository: str, digests: Collection[str]) -> dict[str, int]:
        return self._sizes(_MANIFEST_SIZES, repository, digests)

    def delete_manifest(self, repository: str, digest: str) -> bool:
        with self._write() as conn:
            repository_id = self._repository_id(conn, repository)
            if repository_id is None:
                return False
            manifest_id = conn.execute(
                select(s.manifests.c.id).where(
                    s.manifests.c.repository_id == repository_id, s.manifests.c.digest == digest
                )
            ).scalar_one_or_none()
            if manifest_id is None:
                return False
            gc_queue.remove_manifest(conn, repository_id, manifest_id, digest, time.time())
            if self.outbox is not None:
                self.outbox.record(
                    conn,
                    ce.MANIFEST_DELETED,
                    repository,
                    f"{repository}@{digest}",
                    {"digest": digest},
                )
            return True

    def delete_tag(self, repository: str, tag: str) -> bool:
        with self._write() as conn:
            repository_id = self._repository_id(conn, repository)
            if repository_id is None:
                return False
            result = conn.execute(
                delete(s.tags)
                .where(s.tags.c.repository_id == repository_id, s.tags.c.name == tag)
                .returning(s.tags.c.manifest_id)
            )
            manifest_id = result.scalar_one_or_none()
            if manifest_id is not None and self.outbox is not None:
                digest = conn.execute(
                    select(s.manifests.c.digest).where(s.manifests.c.id == manifest_id)
                ).scalar_one()
                self.outbox.record(
                    conn,
                    ce.TAG_DELETED,
                    repository,
                    f"{repository}:{tag}",
                    {"tag": tag, "digest": digest},
                )
            return manifest_id is not None

    def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        with self._read() as conn:
            repository_id = self._repository_id(conn, repository)
            if repository_id is None:
                return None
            query = select(s.tags.c.name).where(s.tags.c.repository_id == repository_id)
            if last is not None:
                query = query.where(s.tags.c.name > last)
            # Binary collation on both databases: lexical order by code point.
            query = query.order_by(
                s.tags.c.name.collate("C") if _is_postgres(conn) else s.tags.c.name
            ).limit(limit)
            return list(conn.execute(query).scalars())

    def list_repositories(self, limit: int, last: str | None) -> list[str]:
        query = select(s.repositories.c.name)
        if last is not None:
            query = query.where(s.repositories.c.name > last)
        with self._read() as conn:
            order = (
                s.repositories.c.name.collate("C") if _is_postgres(conn) else s.repositories.c.name
            )
            return list(conn.execute(query.order_by(order).limit(limit)).scalars())

    def referrers(
        self, repository: str, subject: str, artifact_type: str | None, limit: int, last: str | None
    ) -> list[ReferrerRecord]:
        m = s.manifests
        query = (
            # The size, not the payload: a referrers page must not load every referrer's bytes.
            select(
                m.c.digest,
                m.c.media_type,
                m.c.artifact_type,
                m.c.annotations,
                func.length(m.c.payload).label("size"),
            )
            .select_from(s.repositories.join(m, m.c.repository_id == s.repositories.c.id))
            .where(s.repositories.c.name == repository, m.c.subject_digest == subject)
            .order_by(m.c.digest)
            .limit(limit)
        )
        if artifact_type is not None:
            query = query.where(m.c.artifact_type == artifact_type)
        if last is not None:
            query = query.where(m.c.digest > last)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            ReferrerRecord(
                digest=row.digest,
                media_type=row.media_type,
                size=int(row.size),
                artifact_type=row.artifact_type,
                annotations=json.loads(row.annotations) if row.annotations else {},
            )
            for row in rows
        ]

    # --- upload sessions -----------------------------------------------------------------------
    def create_upload(
        self,
        session: UploadSession,
        until: float | None = None,
        holder: str | None = None,
        *,
        durable: bool = False,
    ) -> bool:
        row = {
            "id": session.id,
            "repository": session.repository,
            "algorithm": session.algorithm,
            "offset": session.offset,
            "hash_state": session.hash_state,
            "appends": None if session.appends is None else " ".join(session.appends),
            "lease_until": until,
            "lease_holder": holder,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }
        with self._write(durable=durable) as conn:
            return self._create_upload.first(conn, row) is not None

    def get_upload(self, repository: str, upload_id: str) -> UploadSession | None:
        with self._read() as conn:
            row = _UPLOAD.first(conn, {"upload_id": upload_id, "repo_name": repository})
        return None if row is None else _session(row)

    def claim_upload(
        self,
        repository: str,
        upload_id: str,
        now: float,
        until: float,
        holder: str,
        replacing: float | None = None,
    ) -> UploadSession | None:
        key = {"upload_id": upload_id, "repo_name": repository}
        with self._write(durable=False) as conn:
            claimed = conn.execute(
                _CLAIM_UPLOAD,
                {**key, "now": now, "until": until, "holder": holder, "replacing": replacing},
            )
            row = _UPLOAD.first(conn, key)
        if row is None or row.offset == ENDED_OFFSET:
            return None
        if claimed.rowcount == 0:
            raise UploadBusy(row.offset, row.lease_until, row.lease_holder)
        return _session(row)

    @staticmethod
    def _held(upload_id: str, token: float) -> Any:
        return (s.uploads.c.id == upload_id) & (s.uploads.c.lease_until == token)

    def extend_lease(self, upload_id: str, token: float, until: float) -> bool:
        with self._write(durable=False) as conn:
            result = conn.execute(
                update(s.uploads).where(self._held(upload_id, token)).values(lease_until=until)
            )
            return result.rowcount > 0

    def release_upload(
        self,
        upload_id: str,
        token: float,
        offset: int,
        hash_state: bytes,
        now: float,
        append: str | None = None,
    ) -> bool:
        values = {"to_offset": offset, "to_state": hash_state, "now": now}
        statement = _RELEASE_UPLOAD
        if append is not None:
            statement, values["append"] = _RELEASE_UPLOAD_APPENDING, append
        # Durable: the 202 of a PATCH tells the client its bytes are kept, so their record
        # must survive a power failure as the bytes (fdatasynced before) do.
        with self._write() as conn:
            result = conn.execute(statement, {"upload_id": upload_id, "token": token, **values})
            return result.rowcount > 0

    def complete_upload(
        self,
        upload_id: str,
        token: float,
        repository: str,
        digest: str,
        size: int,
        location: str | None,
    ) -> bool:
        with self._write() as conn:
            if not self._end_held(conn, upload_id, token):
                return False
            # Bytes at the digest's own place are always valid, so they may replace whatever
            # was recorded; bytes kept in place never displace a recorded location (someone
            # may be reading it): the caller settles that (UploadService._settle).
            self._link_blob(conn, repository, digest, size, location, replace=location is None)
            return True

    def complete_unleased(
        self,
        session: UploadSession,
        digest: str,
        size: int,
        publish: Callable[[], None],
    ) -> bool:
        with self._write() as conn:
            # The claim, folded in: the row is ended (so that no claim can take it) only if
            # nobody holds it and it is where the caller read it; a claim waits on this
            # transaction (SQLite's writer lock, PostgreSQL's row lock), so no request opens the
            # upload while publish() moves it.
            ended = _END_UNLEASED_UPLOAD.run(
                conn,
                {
                    "upload_id": session.id,
                    "repo_name": session.repository,
                    "at_offset": session.offset,
                },
            )
            if ended == 0:
                return False
            publish()
            self._link_blob(conn, session.repository, digest, size, None, replace=True)
            return True

    def discard_upload(self, upload_id: str, token: float) -> bool:
        with self._write() as conn:
            return self._end_held(conn, upload_id, token)

    @staticmethod
    def _end_held(conn: Connection, upload_id: str, token: float) -> bool:
        ended = conn.execute(_END_HELD_UPLOAD, {"upload_id": upload_id, "token": token})
        return ended.rowcount > 0

    def end_upload(self, session: UploadSession) -> None:
        with self._write() as conn:
            self._end_upload(conn, session)

    def _end_upload(self, conn: Connection, session: UploadSession) -> None:
        self._end_upload_row.run(
            conn,
            {
                "id": session.id,
                "repository": session.repository,
                "algorithm": session.algorithm,
                "offset": ENDED_OFFSET,
                "hash_state": b"",
                "lease_until": None,
                "lease_holder": None,
                "appends": None,  # as the column's default: a Prepared statement names all
                "created_at": session.created_at,
                "updated_at": session.created_at,  # see _END_HELD_UPLOAD
            },
        )

    def upload_exists(self, upload_id: str) -> bool:
        with self._read() as conn:
            query = select(s.uploads.c.id).where(
                s.uploads.c.id == upload_id, s.uploads.c.offset != ENDED_OFFSET
            )
            return conn.execute(query).first() is not None

    def expire_uploads(self, updated_before: float, now: float) -> list[str]:
        u = s.uploads
        idle = (u.c.updated_at < updated_before) & (
            u.c.lease_until.is_(None) | (u.c.lease_until < now)
        )
        # RETURNING: exactly the rows this statement deleted, even if a claim raced the sweep.
        with self._write() as conn:
            rows = conn.execute(delete(u).where(idle).returning(u.c.id, u.c.offset)).all()
        # Ended sessions' bytes are gone already, or are the blob they became (S3 publishes in
        # place, under the upload's own keys): only abandoned ones are the caller's to remove.
        return [row.id for row in rows if row.offset != ENDED_OFFSET]

    def check(self) -> None:
        with self._read() as conn:
            conn.execute(text("SELECT 1"))

    def inventory(self) -> Inventory:
        count = func.count()
        with self._read() as conn:
            row = conn.execute(
                select(
                    select(count).select_from(s.repositories).scalar_subquery(),
                    select(count).select_from(s.manifests).scalar_subquery(),
                    select(count).select_from(s.tags).scalar_subquery(),
                    select(count)
                    .select_from(s.uploads)
                    .where(s.uploads.c.offset != ENDED_OFFSET)
                    .scalar_subquery(),
                    select(func.coalesce(func.sum(s.blobs.c.size), 0)).scalar_subquery(),
                )
            ).one()
        return Inventory(*(int(value) for value in row))


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
