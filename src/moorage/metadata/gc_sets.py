"""The collector's reviews of links and blobs on SQLite, a batch of candidates at a time: a few
set statements per batch instead of six or seven statements per candidate (gc_sql.py keeps
the per-candidate path for PostgreSQL and for manifests).

Why it is as safe as the per-candidate path: SQLite has one writer, and these run inside one
of the registry's write transactions, so every check below is made with every request's writes
either committed before it or waiting for its commit, exactly as the per-candidate checks are
(on SQLite those take no row locks either: ``FOR UPDATE`` is not SQLite's). A link or blob is
deleted by the same statement that finds it unused, and a review is dropped under the same
conditions as there: if it was still due (links) or still there (blobs), whatever the outcome.

The batch goes to SQLite as one JSON array (``json_each``), so each statement has one text,
compiled once by the driver whatever the batch's length. ``CROSS JOIN`` makes that array the
outer loop (SQLite's planner otherwise scans the queue for each of its elements: 3 ms a
candidate, measured). Through the driver, as :mod:`moorage.metadata.prepared` does, for the
same reason: SQLAlchemy's work per execution is several times SQLite's own here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from moorage.metadata.gc_port import Candidate

# The due link reviews of the batch, gone: every outcome drops a due review (deleted, found in
# use, or found missing), and a review that is not due (touched since the queue was read: a HEAD
# restarted its grace) or no longer there stays untouched. Returns the keys it dropped.
_DROP_DUE_LINK_REVIEWS = """
DELETE FROM gc_reviews WHERE rowid IN (
    SELECT r.rowid FROM json_each(:batch) AS c
    CROSS JOIN gc_reviews AS r
        ON r.kind = 'link' AND r.repository_id = c.value ->> 0 AND r.digest = c.value ->> 1
    WHERE r.touched_at <= :due_before)
RETURNING repository_id, digest
"""

# Of those, the links no manifest of their repository references, deleted.
_DELETE_UNUSED_LINKS = """
DELETE FROM repository_blobs WHERE rowid IN (
    SELECT rb.rowid FROM json_each(:due) AS c
    CROSS JOIN repository_blobs AS rb
        ON rb.repository_id = c.value ->> 0 AND rb.digest = c.value ->> 1
    WHERE NOT EXISTS (
        SELECT 1 FROM manifest_blobs AS mb JOIN manifests AS m ON m.id = mb.manifest_id
        WHERE m.repository_id = rb.repository_id AND mb.digest = rb.digest))
RETURNING repository_id, digest
"""

# The sizes of their blobs, for the report. (Not a subquery of the RETURNING above: SQLite
# scans the whole table for it there.)
_BLOB_SIZES = """
SELECT b.digest, b.size FROM json_each(:digests) AS c CROSS JOIN blobs AS b ON b.digest = c.value
"""

# Each blob whose link went: perhaps its last link, so due at once (no client can reach it by a
# link any more), as gc_queue.enqueue_blob queues it one at a time.
_ENQUEUE_BLOBS = """
INSERT INTO gc_reviews (kind, repository_id, digest, touched_at)
SELECT 'blob', 0, c.value, 0.0 FROM json_each(:digests) AS c WHERE true
ON CONFLICT (kind, repository_id, digest) DO UPDATE SET touched_at = excluded.touched_at
"""

# A dry run's: of the blobs whose link went, those nothing uses now (a real run deletes them
# in its own review of the blob, next).
_UNUSED_BLOBS = """
SELECT c.value FROM json_each(:digests) AS c
WHERE NOT EXISTS (SELECT 1 FROM repository_blobs AS rb WHERE rb.digest = c.value)
    AND NOT EXISTS (SELECT 1 FROM manifest_blobs AS mb WHERE mb.digest = c.value)
"""

# The blobs of the batch still queued that no repository links and no manifest references,
# deleted (rows first; the caller deletes the bytes after, before the commit).
_DELETE_UNUSED_BLOBS = """
DELETE FROM blobs WHERE rowid IN (
    SELECT b.rowid FROM json_each(:batch) AS c
    CROSS JOIN gc_reviews AS r ON r.kind = 'blob' AND r.repository_id = 0 AND r.digest = c.value
    CROSS JOIN blobs AS b ON b.digest = r.digest
    WHERE NOT EXISTS (SELECT 1 FROM repository_blobs AS rb WHERE rb.digest = b.digest)
        AND NOT EXISTS (SELECT 1 FROM manifest_blobs AS mb WHERE mb.digest = b.digest))
RETURNING digest, size, location
"""

# Every blob review of the batch: deleted, found in use, or found missing, each drops it.
_DROP_BLOB_REVIEWS = """
DELETE FROM gc_reviews
WHERE kind = 'blob' AND repository_id = 0 AND digest IN (SELECT value FROM json_each(:batch))
"""


def _run(conn: Connection, sql: str, params: dict[str, Any]) -> Any:
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw.execute(sql, params)


@dataclass(frozen=True, slots=True)
class GoneLink:
    """A link the batch deleted: its blob's ``size``, and (dry runs only) whether nothing uses
    the blob any more (``blob_unused``)."""

    repository_id: int
    digest: str
    size: int
    blob_unused: bool = False


def collect_links(
    conn: Connection, batch: Sequence[Candidate], due_before: float, dry_run: bool
) -> list[GoneLink]:
    """Delete the links of ``batch`` whose review is still due and that no manifest of their
    repository references; drop every due review of the batch; queue the blobs of the links
    deleted, due at once. Returns the links deleted, in no particular order."""
    keys = json.dumps([[c.repository_id, c.digest] for c in batch])
    due = _run(conn, _DROP_DUE_LINK_REVIEWS, {"batch": keys, "due_before": due_before}).fetchall()
    if not due:
        return []
    gone = _run(conn, _DELETE_UNUSED_LINKS, {"due": json.dumps(due)}).fetchall()
    if not gone:
        return []
    digests = json.dumps(sorted({digest for _, digest in gone}))
    _run(conn, _ENQUEUE_BLOBS, {"digests": digests})
    sizes = dict(_run(conn, _BLOB_SIZES, {"digests": digests}).fetchall())
    unused: set[str] = set()
    if dry_run:
        unused = {row[0] for row in _run(conn, _UNUSED_BLOBS, {"digests": digests})}
    return [
        GoneLink(rid, digest, int(sizes.get(digest) or 0), digest in unused) for rid, digest in gone
    ]


@dataclass(frozen=True, slots=True)
class GoneBlob:
    digest: str
    size: int
    location: str | None


def collect_blobs(conn: Connection, batch: Sequence[Candidate]) -> list[GoneBlob]:
    """Delete the rows of the blobs of ``batch`` still queued that nothing links or references,
    and drop every blob review of the batch. Returns the rows deleted, in no particular order:
    their bytes are the caller's to delete, inside this transaction."""
    digests = json.dumps([c.digest for c in batch])
    gone = _run(conn, _DELETE_UNUSED_BLOBS, {"batch": digests}).fetchall()
    _run(conn, _DROP_BLOB_REVIEWS, {"batch": digests})
    return [GoneBlob(digest, int(size), location) for digest, size, location in gone]
