"""Content discovery: tags, the catalog and referrers, each a bounded query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.port import MetadataStore
from moorage.metadata.records import ReferrerRecord
from moorage.oci.digest import Digest
from moorage.services.pagination import Page, PageLimits, page_of

# Rows read per query while filtering the catalog for a caller who may see only some names.
CATALOG_SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class ReferrersPage:
    referrers: list[ReferrerRecord]
    next_last: str | None


class ListingService:
    def __init__(self, metadata: MetadataStore, limits: PageLimits) -> None:
        self.metadata = metadata
        self.limits = limits

    # ``size``: the page size, from ``self.limits.resolve`` (the caller needs it for the
    # next page's link too, so it resolves the client's ``n`` once).

    def tags(self, repository: str, size: int, last: str | None) -> Page:
        rows = self.metadata.list_tags(repository, size + 1, last)
        if rows is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repository})
        return page_of(rows, size)

    def catalog(
        self, size: int, last: str | None, visible: Callable[[str], bool] | None = None
    ) -> Page:
        """A page of repository names; with ``visible``, only those it accepts (the caller's
        pullable repositories), still full pages with a correct cursor."""
        if visible is None:
            return page_of(self.metadata.list_repositories(size + 1, last), size)
        found: list[str] = []
        batch = max(size + 1, CATALOG_SCAN_BATCH)
        while len(found) <= size:
            rows = self.metadata.list_repositories(batch, last)
            found.extend(name for name in rows if visible(name))
            if len(rows) < batch:
                break
            last = rows[-1]
        return page_of(found, size)

    def referrers(
        self,
        repository: str,
        subject: Digest,
        artifact_type: str | None,
        size: int,
        last: str | None,
    ) -> ReferrersPage:
        rows = self.metadata.referrers(repository, str(subject), artifact_type, size + 1, last)
        page = page_of([row.digest for row in rows], size)
        return ReferrersPage(rows[: len(page.items)], page.next_last)
