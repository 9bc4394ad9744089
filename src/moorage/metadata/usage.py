"""What repositories hold, their quotas, and removing a repository: records and the port.

How bytes are counted (the same rule for ``moorage usage`` and for quotas):

- A repository holds the blobs its manifests reference (each distinct digest once, however many
  of its manifests share it) plus its manifests' own bytes (stored in the database). Blobs that
  are only *linked* (uploaded or mounted, but referenced by none of its manifests: a push whose
  manifest has not arrived yet, was refused, or was abandoned) are reported apart as
  ``unreferenced_bytes`` and never count towards a quota, so a refused push does not make the
  next one fail too.
- A blob shared by several repositories counts once in each of them; a namespace counts each
  distinct blob once across its repositories; the registry's ``distinct_bytes`` counts each blob
  once overall, and ``stored_bytes`` is every blob row, what the blob store holds until the
  collector reclaims what nothing uses.
- Foreign (non-distributable) layers the registry does not have count nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits on one repository; ``pattern`` is the configured glob that chose them."""

    pattern: str
    max_bytes: int | None = None
    max_tags: int | None = None


class QuotaExceeded(Exception):
    """A push would take a repository past ``limit`` (``"max_bytes"`` or ``"max_tags"``) of
    ``quota``: it would hold ``usage`` (bytes or tags) where ``allowed`` is the most."""

    def __init__(self, quota: Quota, limit: str, usage: int, allowed: int) -> None:
        super().__init__(quota, limit, usage, allowed)
        self.quota = quota
        self.limit = limit
        self.usage = usage
        self.allowed = allowed


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    name: str
    tags: int
    manifests: int
    manifest_bytes: int
    # Distinct blobs referenced by the repository's manifests, and their bytes.
    blobs: int
    blob_bytes: int
    # Blobs linked to the repository that none of its manifests references.
    unreferenced_blobs: int
    unreferenced_bytes: int

    @property
    def bytes(self) -> int:
        """What a quota's ``max_bytes`` is compared with."""
        return self.blob_bytes + self.manifest_bytes

    @property
    def namespace(self) -> str:
        return namespace_of(self.name)


@dataclass(frozen=True, slots=True)
class NamespaceUsage:
    name: str
    repositories: int
    manifest_bytes: int
    # Distinct blobs referenced by the namespace's repositories: a blob shared by two of them
    # counts once here.
    blobs: int
    blob_bytes: int

    @property
    def bytes(self) -> int:
        return self.blob_bytes + self.manifest_bytes


@dataclass(frozen=True, slots=True)
class UsageReport:
    repositories: list[RepositoryUsage]
    namespaces: list[NamespaceUsage]
    # Over the repositories reported: each referenced blob once, plus every manifest.
    distinct_blobs: int
    distinct_bytes: int
    # The whole registry's blob rows, whatever references them (the collector's input).
    stored_blobs: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class DeletedRepository:
    """What a repository delete removed from the database (blob bytes stay for the collector)."""

    name: str
    tags: int
    manifests: int
    linked_blobs: int


def namespace_of(repository: str) -> str:
    """The path before the last ``/`` (``team/app`` -> ``team``); ``""`` at the top level."""
    return repository.rpartition("/")[0]


class UsageStore(Protocol):
    def usage(self, pattern: str | None = None) -> UsageReport:
        """Usage of the repositories matching the glob ``pattern`` (all when None), by
        repository and namespace (both in name order), from one consistent snapshot."""

    def repository_usage(self, name: str) -> RepositoryUsage | None:
        """One repository's figures, as :meth:`usage` counts them; None if it does not exist."""

    def delete_repository(self, name: str) -> DeletedRepository | None:
        """In one transaction, remove the repository, its tags, manifests (with their
        references) and blob links; None if it does not exist. Blob rows and bytes stay: the
        collector reclaims those nothing else uses. Upload sessions are left to expire."""
