"""The ``BrowseStore`` port: the read models a person browsing the registry needs.

The registry's own port (:mod:`moorage.metadata.port`) answers what the distribution API asks:
names in order, one manifest at a time. A page about a repository also wants counts, sizes and
times; those queries live here so the protocol port stays the spec's. Every method is one
bounded read: a page of rows and aggregates over that page's rows only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class NameMatch(enum.Enum):
    PREFIX = "prefix"
    CONTAINS = "contains"


class TagOrder(enum.Enum):
    NAME = "name"
    # Most recently pushed first.
    TIME = "time"


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    tag_count: int
    # Bytes of every blob linked to the repository (each blob once).
    size: int
    # When a tag was last set (pushed or moved); None when it has no tags. Manifests' own
    # times are left out: reading them scans rows wide with their payloads (8 ms at 10,000).
    last_push: float | None


@dataclass(frozen=True, slots=True)
class TaggedManifest:
    """A tag, or an untagged manifest (``tag`` None), with what a list of them shows."""

    tag: str | None
    digest: str
    media_type: str
    artifact_type: str | None
    # The bytes of its blobs: an image's config and layers, an index's images' (a blob two
    # platforms share counts twice).
    size: int
    pushed_at: float
    # The manifest's bytes, for an index only (to list its platforms); None otherwise.
    index_payload: bytes | None
    subject: str | None = None


class BrowseStore(Protocol):
    def repository_names(
        self, text: str, match: NameMatch, limit: int, last: str | None, within: str = ""
    ) -> list[str]:
        """Repository names in lexical order after ``last`` that start with ``text``
        (``PREFIX``, an index range) or hold it anywhere (``CONTAINS``); every name when
        ``text`` is empty. Only names starting with ``within`` (an index range too)."""

    def repository_summaries(self, names: list[str]) -> list[RepositorySummary]:
        """Counts, size and last push of the named repositories (unknown names left out), in
        the order of ``names``."""

    def tag_count(self, repository: str) -> int | None:
        """How many tags ``repository`` has; None if it does not exist."""

    def tagged(
        self, repository: str, order: TagOrder, limit: int, offset: int
    ) -> list[TaggedManifest]:
        """A page of the repository's tags with their manifests."""

    def untagged(self, repository: str, limit: int, offset: int) -> list[TaggedManifest]:
        """A page of the repository's manifests that no tag names, newest first."""
