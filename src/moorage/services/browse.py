"""Browsing: repositories with their sizes, a repository's tags, an image with its config and
referrers. The use cases of the web UI, over the same stores and rules as the API.

Visibility is the caller's business, passed in as a predicate (``visible``) or decided before
a call: this service answers for any repository it is asked about, and an unknown one raises
NAME_UNKNOWN / MANIFEST_UNKNOWN exactly as the API does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.browse import (
    BrowseStore,
    NameMatch,
    RepositorySummary,
    TaggedManifest,
    TagOrder,
)
from moorage.metadata.records import ManifestRecord, ReferrerRecord
from moorage.oci.digest import Digest
from moorage.oci.inspect import (
    CONFIG_DISPLAY_MAX_BYTES,
    ConfigView,
    ManifestView,
    Platform,
    index_platforms,
    view_config,
    view_manifest,
)
from moorage.services.blobs import BlobService
from moorage.services.listing import ListingService
from moorage.services.manifests import ManifestService

# Names read per query while filtering repositories for a caller who may see only some.
NAME_SCAN_BATCH = 500
# Referrers shown on an image page (a signature, an SBOM and a few attestations is typical).
REFERRERS_SHOWN = 200


@dataclass(frozen=True, slots=True)
class RepositoryPage:
    repositories: list[RepositorySummary]
    # The cursor of the next page, or None on the last one.
    next_last: str | None


@dataclass(frozen=True, slots=True)
class TagRow:
    manifest: TaggedManifest
    platforms: tuple[Platform, ...]


@dataclass(frozen=True, slots=True)
class TagPage:
    rows: list[TagRow]
    total: int
    page: int
    pages: int


@dataclass(frozen=True, slots=True)
class ReferrerGroup:
    artifact_type: str
    referrers: list[ReferrerRecord]


@dataclass(frozen=True, slots=True)
class ImageDetails:
    record: ManifestRecord
    manifest: ManifestView
    # None for an index, an artifact whose config is not an image config, or a config that is
    # missing or too large to show.
    config: ConfigView | None
    referrers: list[ReferrerGroup]


def _rows(manifests: list[TaggedManifest]) -> list[TagRow]:
    return [
        TagRow(m, index_platforms(m.index_payload) if m.index_payload is not None else ())
        for m in manifests
    ]


class BrowseService:
    def __init__(
        self,
        browse: BrowseStore,
        manifests: ManifestService,
        listing: ListingService,
        blobs: BlobService,
    ) -> None:
        self.browse = browse
        self.manifests = manifests
        self.listing = listing
        self.blobs = blobs

    def repositories(
        self,
        text: str,
        match: NameMatch,
        size: int,
        last: str | None,
        visible: Callable[[str], bool],
        within: tuple[str, ...] | None = None,
    ) -> RepositoryPage:
        """A page of the repositories ``visible`` accepts whose names match ``text``.

        ``within``: name prefixes that bound what ``visible`` can accept (the policy's, see
        ``AccessGate.pull_prefixes``), so only those ranges are read; None reads every name.
        Without it, a caller who may see a few of 100,000 repositories would have every name
        read for each page."""
        found: list[str] = []
        for prefix in ("",) if within is None else within:
            found.extend(self._visible_names(text, match, size + 1, last, visible, prefix))
        # Each range is in order; together, sorted by code point as the database orders them.
        found.sort()
        page = found[:size]
        next_last = page[-1] if len(found) > size and page else None
        return RepositoryPage(self.browse.repository_summaries(page), next_last)

    def _visible_names(
        self,
        text: str,
        match: NameMatch,
        wanted: int,
        last: str | None,
        visible: Callable[[str], bool],
        within: str,
    ) -> list[str]:
        found: list[str] = []
        batch = max(wanted, NAME_SCAN_BATCH)
        while len(found) < wanted:
            names = self.browse.repository_names(text, match, batch, last, within)
            found.extend(name for name in names if visible(name))
            if len(names) < batch:
                break
            last = names[-1]
        return found[:wanted]

    def tags(self, repository: str, order: TagOrder, page: int, size: int) -> TagPage:
        """Page ``page`` (from 1) of the repository's tags; NAME_UNKNOWN if there is none."""
        total = self.browse.tag_count(repository)
        if total is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repository})
        pages = max(1, -(-total // size))
        page = min(max(page, 1), pages)
        rows = self.browse.tagged(repository, order, size, (page - 1) * size)
        return TagPage(_rows(rows), total, page, pages)

    def untagged(self, repository: str, page: int, size: int) -> tuple[list[TagRow], bool]:
        """Page ``page`` of the manifests no tag names, and whether there are more."""
        page = max(page, 1)
        rows = self.browse.untagged(repository, size + 1, (page - 1) * size)
        return _rows(rows[:size]), len(rows) > size

    def image(self, repository: str, reference: str) -> ImageDetails:
        """The manifest a tag or digest names, its config (for an image) and its referrers."""
        record = self.manifests.get(repository, reference)
        manifest = view_manifest(record.payload, record.media_type)
        config = None
        if manifest.config is not None and not manifest.is_index:
            config = self._config(repository, manifest.config.digest)
        referrers = self.listing.referrers(
            repository, Digest.parse(record.digest), None, REFERRERS_SHOWN, None
        ).referrers
        groups: dict[str, list[ReferrerRecord]] = {}
        for referrer in referrers:
            groups.setdefault(referrer.artifact_type or referrer.media_type, []).append(referrer)
        return ImageDetails(
            record,
            manifest,
            config,
            [ReferrerGroup(kind, items) for kind, items in sorted(groups.items())],
        )

    def _config(self, repository: str, digest_text: str) -> ConfigView | None:
        try:
            info = self.blobs.stat(repository, Digest.parse(digest_text))
        except RegistryError:
            return None  # a bad digest, or a config this repository does not hold
        if info.size > CONFIG_DISPLAY_MAX_BYTES:
            return None
        return view_config(b"".join(self.blobs.read(info)))
