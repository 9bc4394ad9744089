"""Writing the garbage collector's review queue, inside the transaction of the change that may
have dropped something's last reference (see docs/gc.md). Used by the registry's writes
(:mod:`moorage.metadata.sql`) and by the collector (:mod:`moorage.metadata.gc_sql`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from moorage.metadata import schema as s
from moorage.metadata.prepared import Prepared

MANIFEST = "manifest"
LINK = "link"
BLOB = "blob"

_r = s.gc_reviews


def dialect_insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _upsert(insert: Any) -> Any:
    statement = insert(_r)
    return statement.on_conflict_do_update(
        index_elements=[_r.c.kind, _r.c.repository_id, _r.c.digest],
        set_={"touched_at": statement.excluded.touched_at},
    )


# Built once: every blob push queues its link (constructing the statement costs more than
# running it on SQLite).
UPSERT = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}
# One row, every column a parameter (prepared.py): a blob push's link, an unlinked blob.
_UPSERT_ONE = {name: Prepared(upsert) for name, upsert in UPSERT.items()}


def enqueue(
    conn: Connection, kind: str, repository_id: int, digests: Iterable[str], touched_at: float
) -> None:
    """Queue ``digests`` for review, or move their review forward to ``touched_at`` (an
    event that may have told a client they exist restarts their grace period)."""
    rows = [
        {"kind": kind, "repository_id": repository_id, "digest": d, "touched_at": touched_at}
        for d in set(digests)
    ]
    if len(rows) == 1:  # a blob push's link: through the driver on SQLite
        _UPSERT_ONE[conn.dialect.name].run(conn, rows[0])
    elif rows:
        conn.execute(UPSERT[conn.dialect.name], rows)


# The collector's: a blob whose link it deleted, due at once, one statement per link.
_ENQUEUE_BLOB = {
    name: Prepared(
        upsert.values(
            kind=literal(BLOB),
            repository_id=literal(0),
            digest=bindparam("digest"),
            touched_at=literal(0.0),
        )
    )
    for name, upsert in UPSERT.items()
}


def enqueue_blob(conn: Connection, digest: str) -> None:
    """Queue a blob for review, due at once (its last link may just have gone: no client can
    reach it by a link any more). As ``enqueue(conn, BLOB, 0, (digest,), 0.0)``, cheaper."""
    _ENQUEUE_BLOB[conn.dialect.name].run(conn, {"digest": digest})


def enqueue_if_absent(
    conn: Connection, kind: str, repository_id: int, digests: Iterable[str], touched_at: float
) -> None:
    """Queue ``digests`` unless already queued (their time is left as it is)."""
    rows = [
        {"kind": kind, "repository_id": repository_id, "digest": d, "touched_at": touched_at}
        for d in set(digests)
    ]
    if rows:
        conn.execute(dialect_insert(conn)(_r).on_conflict_do_nothing(), rows)


def remove_manifest(
    conn: Connection, repository_id: int, manifest_id: int, digest: str, now: float
) -> None:
    """Delete a manifest row with its tags and references, and queue what it kept alive: its
    blob links in the repository, its children (an index's images) and its referrers."""
    m, mb, mc = s.manifests, s.manifest_blobs, s.manifest_children
    blobs = conn.execute(select(mb.c.digest).where(mb.c.manifest_id == manifest_id)).scalars()
    enqueue(conn, LINK, repository_id, blobs, now)
    children = conn.execute(
        select(mc.c.child_digest).where(mc.c.manifest_id == manifest_id)
    ).scalars()
    enqueue(conn, MANIFEST, repository_id, children, now)
    referrers = conn.execute(
        select(m.c.digest).where(m.c.repository_id == repository_id, m.c.subject_digest == digest)
    ).scalars()
    enqueue(conn, MANIFEST, repository_id, referrers, now)
    # Explicit deletes so PostgreSQL and SQLite behave the same without relying on cascades
    # being switched on.
    conn.execute(delete(s.tags).where(s.tags.c.manifest_id == manifest_id))
    conn.execute(delete(mb).where(mb.c.manifest_id == manifest_id))
    conn.execute(delete(mc).where(mc.c.manifest_id == manifest_id))
    conn.execute(delete(m).where(m.c.id == manifest_id))
