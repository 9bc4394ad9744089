"""The :class:`~moorage.metadata.browse.BrowseStore` on SQLAlchemy Core (SQLite, PostgreSQL).

It reads through the registry store's connections (its per-thread SQLite readers, or the
PostgreSQL pool), so browsing adds no connections of its own. Aggregates are correlated
subqueries over one page's repositories or manifests, each answered from an index, so a page
costs the same at 100 repositories as at 100,000.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select

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
    manifests in the same repository (an index's images); correlated to that manifest row."""
    child = s.manifests.alias("child")
    edges = s.manifest_children
    children = (
        select(child.c.id)
        .select_from(
            edges.join(
                child,
                and_(
                    child.c.digest == edges.c.child_digest,
                    child.c.repository_id == _m.c.repository_id,
                ),
            )
        )
        .where(edges.c.manifest_id == _m.c.id)
        # Two levels down from the manifest row: without this SQLAlchemy would give the
        # subquery a manifests table of its own, and every index's children would count.
        .correlate(_m)
    )
    links = s.manifest_blobs
    return (
        select(func.coalesce(func.sum(s.blobs.c.size), 0))
        .select_from(links.join(s.blobs, s.blobs.c.digest == links.c.digest))
        .where(or_(links.c.manifest_id == _m.c.id, links.c.manifest_id.in_(children)))
        .scalar_subquery()
    )


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

    def _name_order(self) -> Any:
        # Binary collation on both databases, as the catalog orders names.
        postgres = self._store.engine.dialect.name == "postgresql"
        return _r.c.name.collate("C") if postgres else _r.c.name

    def repository_names(
        self, text: str, match: NameMatch, limit: int, last: str | None
    ) -> list[str]:
        query = select(_r.c.name)
        if text and match is NameMatch.PREFIX:
            query = query.where(_r.c.name >= text, _r.c.name < text + _AFTER_NAME_CHARACTERS)
        elif text:
            query = query.where(_r.c.name.contains(text, autoescape=True))
        if last is not None:
            query = query.where(_r.c.name > last)
        return [row.name for row in self._rows(query.order_by(self._name_order()).limit(limit))]

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

    def tagged(
        self, repository: str, order: TagOrder, limit: int, offset: int
    ) -> list[TaggedManifest]:
        query = (
            select(*_manifest_columns(_t.c.name, _t.c.updated_at))
            .select_from(
                _r.join(_t, _t.c.repository_id == _r.c.id).join(_m, _m.c.id == _t.c.manifest_id)
            )
            .where(_r.c.name == repository)
        )
        postgres = self._store.engine.dialect.name == "postgresql"
        by_name = _t.c.name.collate("C") if postgres else _t.c.name
        if order is TagOrder.TIME:
            query = query.order_by(_t.c.updated_at.desc(), by_name)
        else:
            query = query.order_by(by_name)
        return [_tagged_manifest(row) for row in self._rows(query.limit(limit).offset(offset))]

    def untagged(self, repository: str, limit: int, offset: int) -> list[TaggedManifest]:
        has_tag = select(_t.c.name).where(_t.c.manifest_id == _m.c.id).exists()
        query = (
            select(*_manifest_columns(literal(None), _m.c.created_at))
            .select_from(_r.join(_m, _m.c.repository_id == _r.c.id))
            .where(_r.c.name == repository, ~has_tag)
            .order_by(_m.c.created_at.desc(), _m.c.digest)
            .limit(limit)
            .offset(offset)
        )
        return [_tagged_manifest(row) for row in self._rows(query)]
