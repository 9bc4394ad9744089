"""Usage, quotas and repository delete in SQL, over the existing tables (no counters to keep
in step: every figure is a query, so a crash or a concurrent delete can never skew one).

What counts is defined in :mod:`moorage.metadata.usage`. Queries are set-based (DISTINCT, EXCEPT,
GROUP BY), so the whole report costs a few scans however many repositories there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    case,
    delete,
    except_,
    func,
    literal_column,
    select,
    true,
)

from moorage.events import cloudevents as ce
from moorage.metadata import gc_queue
from moorage.metadata import schema as s
from moorage.metadata.outbox import OutboxWriter
from moorage.metadata.usage import (
    DeletedRepository,
    NamespaceUsage,
    Quota,
    QuotaExceeded,
    RepositoryUsage,
    UsageReport,
)

_r, _m, _mb, _rb, _b, _t = (
    s.repositories,
    s.manifests,
    s.manifest_blobs,
    s.repository_blobs,
    s.blobs,
    s.tags,
)
_gc = s.gc_reviews


def _like(pattern: str) -> str:
    """A repository glob (``*``, ``?``) as a LIKE pattern with ``\\`` escapes. Valid patterns
    hold no ``%``; ``_`` and the escape itself are made literal."""
    escaped = pattern.replace("\\", "\\\\").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _referenced(condition: Any) -> Select[Any]:
    """Distinct (repository_id, digest): the blobs each repository's manifests reference, for
    the repositories ``condition`` (on ``manifests``) selects. What a repository holds."""
    return (
        select(_m.c.repository_id, _mb.c.digest)
        .select_from(_m.join(_mb, _mb.c.manifest_id == _m.c.id))
        .where(condition)
        .distinct()
    )


def _namespace(name: Any) -> Any:
    """SQL for :func:`moorage.metadata.usage.namespace_of` (keep the two in step), portable to
    SQLite and PostgreSQL: trimming every trailing non-``/`` character leaves ``team/``, then
    the slash goes (names never hold two in a row)."""
    return func.rtrim(func.rtrim(name, func.replace(name, "/", "")), "/")


# --- the quota check, inside a manifest push's transaction -----------------------------------


# Built once: constructing a statement costs more than running it on SQLite.
_LOCK_REPOSITORY = (
    select(_r.c.id).where(_r.c.id == bindparam("repository_id")).with_for_update(key_share=True)
)
_MANIFEST_STORED = select(_m.c.id).where(
    _m.c.repository_id == bindparam("repository_id"), _m.c.digest == bindparam("digest")
)
_TAG_COUNTS = select(
    func.count(),
    func.coalesce(
        func.sum(case((_t.c.name.in_(bindparam("names", expanding=True)), 1), else_=0)), 0
    ),
).where(_t.c.repository_id == bindparam("repository_id"))


def lock_for_quota(conn: Connection, repository_id: int) -> None:
    """Make quota-checked pushes to one repository take turns, so that each one's check sees
    the pushes committed before it (PostgreSQL, READ COMMITTED). Taken first, before any other
    lock in the push, so it cannot take part in a lock cycle. FOR NO KEY UPDATE does not block
    blob uploads (whose foreign keys take KEY SHARE on the row). SQLite has one writer at a
    time already: nothing to do."""
    if conn.dialect.name == "sqlite":
        return
    conn.execute(_LOCK_REPOSITORY, {"repository_id": repository_id}).one()


def manifest_stored(conn: Connection, repository_id: int, digest: str) -> bool:
    params = {"repository_id": repository_id, "digest": digest}
    return conn.execute(_MANIFEST_STORED, params).first() is not None


_ONE_REPOSITORY = _referenced(_m.c.repository_id == bindparam("repository_id")).subquery()
_QUOTA_BYTES = select(
    select(func.coalesce(func.sum(_b.c.size), 0))
    .select_from(_ONE_REPOSITORY.join(_b, _b.c.digest == _ONE_REPOSITORY.c.digest))
    .scalar_subquery(),
    select(func.coalesce(func.sum(func.length(_m.c.payload)), 0))
    .where(_m.c.repository_id == bindparam("repository_id"))
    .scalar_subquery(),
)


def repository_bytes(conn: Connection, repository_id: int) -> int:
    """The repository's usage (referenced blobs once each, plus manifests), in one statement."""
    blob_bytes, manifest_bytes = conn.execute(_QUOTA_BYTES, {"repository_id": repository_id}).one()
    return int(blob_bytes) + int(manifest_bytes)


def enforce_quota(
    conn: Connection,
    repository_id: int,
    quota: Quota,
    *,
    new_manifest: bool,
    tags: list[str],
) -> None:
    """Raise :class:`QuotaExceeded` if this push takes the repository past ``quota``. Call it
    after the manifest and its references are written and before the tags are: the byte count
    then includes this push, and raising rolls the whole push back.

    A push that adds no bytes (the manifest was already there: a retry or a tag move) is never
    refused for bytes, and one that creates no tag never for tags, so a repository over a
    lowered quota can still be retagged and pruned."""
    if quota.max_bytes is not None and new_manifest:
        used = repository_bytes(conn, repository_id)
        if used > quota.max_bytes:
            raise QuotaExceeded(quota, "max_bytes", used, quota.max_bytes)
    if quota.max_tags is not None and tags:
        wanted = set(tags)
        total, existing = conn.execute(
            _TAG_COUNTS, {"repository_id": repository_id, "names": sorted(wanted)}
        ).one()
        created = len(wanted) - int(existing)
        if created and int(total) + created > quota.max_tags:
            raise QuotaExceeded(quota, "max_tags", int(total) + created, quota.max_tags)


# --- the report and repository delete ----------------------------------------------------------


class Transactions(Protocol):
    """What this module needs of :class:`~moorage.metadata.sql.SqlMetadataStore`."""

    # Where a repository delete writes its event (None: events are off).
    outbox: OutboxWriter | None

    def snapshot(self) -> AbstractContextManager[Connection]: ...

    def transaction(self) -> AbstractContextManager[Connection]: ...


class SqlUsageStore:
    """The :class:`~moorage.metadata.usage.UsageStore` on the metadata store's database (and
    its writer lock, so a delete from the CLI queues behind a running server's writes)."""

    def __init__(self, store: Transactions) -> None:
        self._store = store

    def usage(self, pattern: str | None = None) -> UsageReport:
        selected = None
        if pattern is not None:
            selected = select(_r.c.id).where(_r.c.name.like(_like(pattern), escape="\\"))
        with self._store.snapshot() as conn:
            return _report(conn, selected)

    def repository_usage(self, name: str) -> RepositoryUsage | None:
        # An equality on the name (its unique index), not the report's LIKE, and none of the
        # report's namespace and registry-wide totals: a repository page asks this each time.
        selected = select(_r.c.id).where(_r.c.name == name)
        with self._store.snapshot() as conn:
            found = _repository_usages(conn, selected)
        return found[0] if found else None

    def delete_repository(self, name: str) -> DeletedRepository | None:
        with self._store.transaction() as conn:
            # The row lock first: a quota-checked push to this repository (which takes it first
            # too) waits, and then finds the repository gone or recreates it empty.
            query = select(_r.c.id).where(_r.c.name == name)
            if conn.dialect.name != "sqlite":
                query = query.with_for_update()
            repository_id = conn.execute(query).scalar_one_or_none()
            if repository_id is None:
                return None
            manifest_ids = select(_m.c.id).where(_m.c.repository_id == repository_id)
            # What the repository kept alive becomes a garbage-collection candidate in this
            # transaction, due at once (nobody can reach it through this repository any more):
            # the next collection reclaims what no other repository uses, without a full run.
            linked = select(_rb.c.digest).where(_rb.c.repository_id == repository_id)
            referenced = select(_mb.c.digest).where(_mb.c.manifest_id.in_(manifest_ids))
            candidates = conn.execute(linked.union(referenced)).scalars().all()
            gc_queue.enqueue(conn, gc_queue.BLOB, 0, candidates, 0.0)
            conn.execute(delete(_gc).where(_gc.c.repository_id == repository_id))
            # Explicit deletes, children first and in delete_manifest's order, so both
            # databases behave the same without relying on cascades.
            tags = conn.execute(delete(_t).where(_t.c.repository_id == repository_id)).rowcount
            conn.execute(delete(_mb).where(_mb.c.manifest_id.in_(manifest_ids)))
            children = s.manifest_children
            conn.execute(delete(children).where(children.c.manifest_id.in_(manifest_ids)))
            manifests = conn.execute(delete(_m).where(_m.c.repository_id == repository_id)).rowcount
            links = conn.execute(delete(_rb).where(_rb.c.repository_id == repository_id)).rowcount
            conn.execute(delete(_r).where(_r.c.id == repository_id))
            outbox = self._store.outbox
            if outbox is not None:
                outbox.record(
                    conn,
                    ce.REPOSITORY_DELETED,
                    name,
                    name,
                    {"tags": tags, "manifests": manifests},
                )
        return DeletedRepository(name, tags, manifests, links)


def _by_repository(conn: Connection, query: Select[Any]) -> dict[int, tuple[int, int]]:
    """``repository_id -> (count, bytes)`` from a query yielding those three columns."""
    return {row[0]: (int(row[1]), int(row[2] or 0)) for row in conn.execute(query)}


def _in(column: Any, selected: Select[Any] | None) -> Any:
    """``column IN (selected)``, or no condition at all when every repository is wanted."""
    return true() if selected is None else column.in_(selected)


def _repository_usages(conn: Connection, selected: Select[Any] | None) -> list[RepositoryUsage]:
    """Each repository ``selected`` (ids; None: all of them) with its figures, in name order."""
    names: dict[int, str] = {
        row.id: row.name
        for row in conn.execute(select(_r.c.id, _r.c.name).where(_in(_r.c.id, selected)))
    }
    repository_filter = _in(_m.c.repository_id, selected)

    tags = _by_repository(
        conn,
        select(_t.c.repository_id, func.count(), literal_column("0"))
        .where(_in(_t.c.repository_id, selected))
        .group_by(_t.c.repository_id),
    )
    manifests = _by_repository(
        conn,
        select(_m.c.repository_id, func.count(), func.sum(func.length(_m.c.payload)))
        .where(repository_filter)
        .group_by(_m.c.repository_id),
    )
    referenced = _referenced(repository_filter).subquery()
    blobs = _by_repository(
        conn,
        select(referenced.c.repository_id, func.count(), func.sum(_b.c.size))
        .select_from(referenced.join(_b, _b.c.digest == referenced.c.digest))
        .group_by(referenced.c.repository_id),
    )
    # Linked minus referenced, as a set difference: a NOT EXISTS per link would have to probe
    # every manifest of the repository (manifest_blobs has no index by digest alone).
    unreferenced_pairs = except_(
        select(_rb.c.repository_id, _rb.c.digest).where(_in(_rb.c.repository_id, selected)),
        _referenced(repository_filter),
    ).subquery()
    unreferenced = _by_repository(
        conn,
        select(unreferenced_pairs.c.repository_id, func.count(), func.sum(_b.c.size))
        .select_from(unreferenced_pairs.join(_b, _b.c.digest == unreferenced_pairs.c.digest))
        .group_by(unreferenced_pairs.c.repository_id),
    )

    repositories = [
        RepositoryUsage(
            name=name,
            tags=tags.get(rid, (0, 0))[0],
            manifests=manifests.get(rid, (0, 0))[0],
            manifest_bytes=manifests.get(rid, (0, 0))[1],
            blobs=blobs.get(rid, (0, 0))[0],
            blob_bytes=blobs.get(rid, (0, 0))[1],
            unreferenced_blobs=unreferenced.get(rid, (0, 0))[0],
            unreferenced_bytes=unreferenced.get(rid, (0, 0))[1],
        )
        for rid, name in names.items()
    ]
    repositories.sort(key=lambda usage: usage.name)
    return repositories


def _report(conn: Connection, selected: Select[Any] | None) -> UsageReport:
    """The report over the repositories ``selected`` (ids; None: all of them)."""
    repositories = _repository_usages(conn, selected)
    repository_filter = _in(_m.c.repository_id, selected)
    referenced = _referenced(repository_filter).subquery()

    # Distinct blobs per namespace: the same digest in two repositories of one namespace is
    # one (namespace, digest) pair.
    named = (
        select(_namespace(_r.c.name).label("namespace"), referenced.c.digest)
        .select_from(referenced.join(_r, _r.c.id == referenced.c.repository_id))
        .distinct()
        .subquery()
    )
    namespace_blobs = {
        row[0]: (int(row[1]), int(row[2] or 0))
        for row in conn.execute(
            select(named.c.namespace, func.count(), func.sum(_b.c.size))
            .select_from(named.join(_b, _b.c.digest == named.c.digest))
            .group_by(named.c.namespace)
        )
    }
    namespaces = _namespaces(repositories, namespace_blobs)

    # Straight from the references: deduplicating (repository, digest) pairs first is wasted,
    # and so is the join when every repository is wanted.
    digests_query = select(_mb.c.digest).distinct()
    if selected is not None:
        digests_query = digests_query.select_from(_m.join(_mb, _mb.c.manifest_id == _m.c.id)).where(
            repository_filter
        )
    digests = digests_query.subquery()
    distinct_blobs, distinct_blob_bytes = conn.execute(
        select(func.count(), func.coalesce(func.sum(_b.c.size), 0)).select_from(
            digests.join(_b, _b.c.digest == digests.c.digest)
        )
    ).one()
    stored_blobs, stored_bytes = conn.execute(
        select(func.count(), func.coalesce(func.sum(_b.c.size), 0))
    ).one()
    return UsageReport(
        repositories=repositories,
        namespaces=namespaces,
        distinct_blobs=int(distinct_blobs),
        distinct_bytes=int(distinct_blob_bytes) + sum(u.manifest_bytes for u in repositories),
        stored_blobs=int(stored_blobs),
        stored_bytes=int(stored_bytes),
    )


def _namespaces(
    repositories: list[RepositoryUsage], blobs: dict[str, tuple[int, int]]
) -> list[NamespaceUsage]:
    counts: dict[str, list[int]] = {}
    for usage in repositories:
        entry = counts.setdefault(usage.namespace, [0, 0])
        entry[0] += 1
        entry[1] += usage.manifest_bytes
    return [
        NamespaceUsage(
            name=name,
            repositories=repos,
            manifest_bytes=manifest_bytes,
            blobs=blobs.get(name, (0, 0))[0],
            blob_bytes=blobs.get(name, (0, 0))[1],
        )
        for name, (repos, manifest_bytes) in sorted(counts.items())
    ]


@contextmanager
def read_snapshot(conn: Connection) -> Iterator[Connection]:
    """One consistent snapshot over several SELECTs: a deferred BEGIN on SQLite (the engine
    issues none for reads), REPEATABLE READ on PostgreSQL."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.exec_driver_sql("ROLLBACK")
        return
    with conn.execution_options(isolation_level="REPEATABLE READ").begin():
        yield conn
