"""The :class:`~moorage.metadata.browse.BrowseStore` on SQLAlchemy Core (SQLite, PostgreSQL).

It reads through the registry store's connections (its per-thread SQLite readers, or the
PostgreSQL pool), so browsing adds no connections of its own. Aggregates are correlated
subqueries over one page's repositories or manifests, each answered from an index, so a page
costs the same at 100 repositories as at 100,000.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, select

from moorage.metadata import schema as s
from moorage.metadata.browse import (
    NameMatch,
    RepositorySummary,
    TaggedManifest,
    TagOrder,
)
from moorage.metadata.sql import SqlMetadataStore
from moorage.oci import mediatypes

# Repository names hold only [a-z0-9._/-], all below '~' in code point order, so every name
# that starts with a prefix sorts in [prefix, prefix + '~'): an index range, not a LIKE scan.
_AFTER_NAME_CHARACTERS = "~"

_r = s.repositories
_m = s.manifests
_t = s.tags


def _blob_bytes() -> ColumnElement[Any]:
    """The bytes of the blobs the outer query's manifest references, plus those of its child
    manifests in the same repository (an index's images); correlated to that manifest row.

    Two sums, each an index walk. The children are found from the manifest's own child edges
    by (repository, digest), written as nested INs so that the planner cannot start from every
    manifest of the repository instead (it did, with a join: 10,000 probes per row)."""
    links = s.manifest_blobs
    own = (
        select(func.coalesce(func.sum(s.blobs.c.size), 0))
        .select_from(links.join(s.blobs, s.blobs.c.digest == links.c.digest))
        .where(links.c.manifest_id == _m.c.id)
        .scalar_subquery()
    )
    child = s.manifests.alias("child")
    child_links = s.manifest_blobs.alias("child_links")
    # Each level down from the manifest row is correlated to it explicitly: SQLAlchemy
    # correlates only to the enclosing SELECT, and would otherwise give each subquery a
    # manifests table of its own (every index's children would then count).
    child_digests = (
        select(s.manifest_children.c.child_digest)
        .where(s.manifest_children.c.manifest_id == _m.c.id)
        .correlate(_m)
    )
    child_ids = (
        select(child.c.id)
        .where(child.c.repository_id == _m.c.repository_id, child.c.digest.in_(child_digests))
        .correlate(_m)
    )
    children = (
        select(func.coalesce(func.sum(s.blobs.c.size), 0))
        .select_from(child_links.join(s.blobs, s.blobs.c.digest == child_links.c.digest))
        .where(child_links.c.manifest_id.in_(child_ids))
        .correlate(_m)
        .scalar_subquery()
    )
    return own + children


def _manifest_columns(tag: ColumnElement[Any], pushed_at: ColumnElement[Any]) -> list[Any]:
    indexes = list(mediatypes.INDEXES)
    return [
        tag.label("tag"),
        _m.c.digest,
        _m.c.media_type,
        _m.c.artifact_type,
        _m.c.subject_digest,
        _blob_bytes().label("size"),
        pushed_at.label("pushed_at"),
        # Only an index's bytes are read (for its platforms); an image's stay in the database.
        case((_m.c.media_type.in_(indexes), _m.c.payload), else_=None).label("index_payload"),
    ]


def _tagged_manifest(row: Any) -> TaggedManifest:
    return TaggedManifest(
        tag=row.tag,
        digest=row.digest,
        media_type=row.media_type,
        artifact_type=row.artifact_type,
        size=int(row.size or 0),
        pushed_at=float(row.pushed_at),
        index_payload=bytes(row.index_payload) if row.index_payload is not None else None,
        subject=row.subject_digest,
    )


class SqlBrowseStore:
    def __init__(self, store: SqlMetadataStore) -> None:
        self._store = store

    def _rows(self, query: Select[Any]) -> list[Any]:
        # The registry store's read connection: this thread's own on SQLite, pooled otherwise.
        with self._store._read() as conn:
            return list(conn.execute(query).all())

    def _name_of(self, column: Any) -> Any:
        # Binary collation on both databases, as the catalog orders names.
        postgres = self._store.engine.dialect.name == "postgresql"
        return column.collate("C") if postgres else column

    def repository_names(
        self, text: str, match: NameMatch, limit: int, last: str | None, within: str = ""
    ) -> list[str]:
        query = select(_r.c.name)
        for prefix in (within, text if match is NameMatch.PREFIX else ""):
            if prefix:
                query = query.where(
                    _r.c.name >= prefix, _r.c.name < prefix + _AFTER_NAME_CHARACTERS
                )
        if text and match is NameMatch.CONTAINS:
            query = query.where(_r.c.name.contains(text, autoescape=True))
        if last is not None:
            query = query.where(_r.c.name > last)
        query = query.order_by(self._name_of(_r.c.name)).limit(limit)
        return [row.name for row in self._rows(query)]

    def repository_summaries(self, names: list[str]) -> list[RepositorySummary]:
        if not names:
            return []
        tag_count = (
            select(func.count()).select_from(_t).where(_t.c.repository_id == _r.c.id)
        ).scalar_subquery()
        size = (
            select(func.coalesce(func.sum(s.blobs.c.size), 0))
            .select_from(
                s.repository_blobs.join(s.blobs, s.blobs.c.digest == s.repository_blobs.c.digest)
            )
            .where(s.repository_blobs.c.repository_id == _r.c.id)
        ).scalar_subquery()
        last_tag = (
            select(func.max(_t.c.updated_at)).where(_t.c.repository_id == _r.c.id)
        ).scalar_subquery()
        query = select(
            _r.c.name,
            tag_count.label("tag_count"),
            size.label("size"),
            last_tag.label("last_tag"),
        ).where(_r.c.name.in_(names))
        found = {row.name: row for row in self._rows(query)}
        summaries = []
        for name in names:
            row = found.get(name)
            if row is None:
                continue
            summaries.append(
                RepositorySummary(name, int(row.tag_count), int(row.size), row.last_tag)
            )
        return summaries

    def tag_count(self, repository: str) -> int | None:
        query = (
            select(func.count(_t.c.name))
            .select_from(_r.outerjoin(_t, _t.c.repository_id == _r.c.id))
            .where(_r.c.name == repository)
            .group_by(_r.c.id)
        )
        rows = self._rows(query)
        return int(rows[0][0]) if rows else None

    def _with_manifests(self, page: Any, order: list[Any]) -> list[TaggedManifest]:
        """The columns of :class:`TaggedManifest` for the rows of ``page`` (a subquery with
        ``tag``, ``manifest_id`` and ``pushed_at``), in ``order``. The page is cut first, so
        the per-manifest sums run for its rows only, never for every row the sort reads."""
        query = (
            select(*_manifest_columns(page.c.tag, page.c.pushed_at))
            .select_from(page.join(_m, _m.c.id == page.c.manifest_id))
            .order_by(*order)
        )
        return [_tagged_manifest(row) for row in self._rows(query)]

    def tagged(
        self, repository: str, order: TagOrder, limit: int, offset: int
    ) -> list[TaggedManifest]:
        by_name = self._name_of(_t.c.name)
        sort = [by_name] if order is TagOrder.NAME else [_t.c.updated_at.desc(), by_name]
        page = (
            select(
                _t.c.name.label("tag"),
                _t.c.manifest_id,
                _t.c.updated_at.label("pushed_at"),
            )
            .select_from(_r.join(_t, _t.c.repository_id == _r.c.id))
            .where(_r.c.name == repository)
            .order_by(*sort)
            .limit(limit)
            .offset(offset)
            .subquery("page")
        )
        page_name = self._name_of(page.c.tag)
        again = [page_name] if order is TagOrder.NAME else [page.c.pushed_at.desc(), page_name]
        return self._with_manifests(page, again)

    def untagged(self, repository: str, limit: int, offset: int) -> list[TaggedManifest]:
        has_tag = select(_t.c.name).where(_t.c.manifest_id == _m.c.id).exists()
        page = (
            select(
                literal(None).label("tag"),
                _m.c.id.label("manifest_id"),
                _m.c.created_at.label("pushed_at"),
                _m.c.digest.label("digest"),
            )
            .select_from(_r.join(_m, _m.c.repository_id == _r.c.id))
            .where(_r.c.name == repository, ~has_tag)
            .order_by(_m.c.created_at.desc(), _m.c.digest)
            .limit(limit)
            .offset(offset)
            .subquery("page")
        )
        return self._with_manifests(page, [page.c.pushed_at.desc(), page.c.digest])
