"""The ``GcStore`` port: what the garbage collector (:mod:`moorage.services.gc`) needs from the
metadata database. See docs/gc.md for the rules and the safety argument.

Every ``collect_*`` method re-checks each candidate inside a write transaction, with the rows it
decides on locked (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so the collector never waits for a
request; SQLite: one writer at a time), and deletes rows only if nothing references them at
that moment. A candidate that is busy (locked by a request) is left for the next run. With
``dry_run`` the same checks run and the transaction is rolled back; no byte is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

#: Deletes a blob's bytes from the blob store: ``(digest, location)``. Idempotent.
DeleteBytes = Callable[[str, str | None], None]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An entry of the review queue: ``kind`` is "manifest", "link" or "blob"."""

    kind: str
    repository_id: int
    digest: str


@dataclass(frozen=True, slots=True)
class Collected:
    """Something collected (or, in a dry run, that would be): ``kind`` is "tag" (removed by a
    retention rule), "manifest", "link", "blob" or "orphan"; ``size`` in bytes (a manifest's
    payload, a blob's bytes; the blob's size for a link, which frees nothing by itself; 0 for
    a tag)."""

    kind: str
    digest: str
    size: int
    repository: str | None = None
    tag: str | None = None  # for kind "tag": the tag removed from manifest ``digest``


@dataclass(frozen=True, slots=True)
class Orphan:
    """An object in the blob store that no blob row knows, first seen at ``seen_at``."""

    digest: str
    location: str | None
    seen_at: float


@dataclass(frozen=True, slots=True)
class TagRecord:
    """A tag as retention rules see it: ``pushed_at`` is when it last moved."""

    repository: str
    tag: str
    digest: str
    pushed_at: float


def _keep_untagged(_repository: str) -> float | None:
    return None


@dataclass(frozen=True)
class ManifestPolicy:
    """Which unreferenced manifests go.

    ``referrers``: a referrer (a manifest with a subject) goes once its subject is gone from
    its repository. ``untagged_age(repository)``: how old (seconds since pushed) an untagged
    manifest of that repository must be to go, or None to keep it (the default: digest
    references stay pullable). Tagged manifests and children of a present index always stay."""

    referrers: bool = True
    untagged_age: Callable[[str], float | None] = field(default=_keep_untagged)


class GcStore(Protocol):
    def due(
        self, kind: str, due_before: float, after: Candidate | None, limit: int
    ) -> list[Candidate]:
        """Up to ``limit`` candidates of ``kind`` whose grace started at or before
        ``due_before``, in key order after ``after``."""

    def collect_manifests(
        self,
        candidates: Sequence[Candidate],
        due_before: float,
        policy: ManifestPolicy,
        now: float,
        dry_run: bool,
    ) -> list[Collected]:
        """Delete each candidate manifest that is untagged, not a child of a manifest of its
        repository, and either a referrer whose subject is gone (``policy.referrers``) or
        untagged for long enough (``policy.untagged_age``); queue the links, children and
        referrers it kept alive. Candidates found alive leave the queue."""

    def collect_links(
        self, candidates: Sequence[Candidate], due_before: float, now: float, dry_run: bool
    ) -> list[Collected]:
        """Delete each candidate repository→blob link that no manifest of its repository
        references; the blob is queued (due at once). In a dry run, also reports the blobs
        that would then be unreferenced."""

    def collect_blobs(
        self, candidates: Sequence[Candidate], delete_bytes: DeleteBytes, dry_run: bool
    ) -> list[Collected]:
        """Delete each candidate blob that no repository links and no manifest references:
        its row, then (same transaction, before the commit) its bytes through
        ``delete_bytes``. If ``delete_bytes`` raises, the whole batch is rolled back (rows
        whose bytes went stay, unreachable, still queued: the next run finishes them)."""

    def enqueue_unreferenced(self, now: float) -> int:
        """The full sweep's mark: queue every link, blob and referrer that is unreferenced but
        not queued (left by a crash before the queue existed, or by a write that does not
        queue, such as a repository delete). Returns how many were queued."""

    def tags(self) -> list[TagRecord]:
        """Every tag of every repository."""

    def remove_tags(self, tags: Sequence[TagRecord], now: float, dry_run: bool) -> list[Collected]:
        """Delete each tag if it still names the same manifest since the same push (a tag
        pushed again meanwhile stays); a manifest left with no tag by this is deleted too
        (kind "manifest"), unless an index of its repository lists it. Reports each tag
        (kind "tag") and each such manifest."""

    def enqueue_untagged(self, policy: ManifestPolicy, now: float) -> int:
        """Queue the untagged manifests ``policy.untagged_age`` says are old enough."""

    def unknown(self, found: Sequence[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        """Of these ``(digest, location)`` objects of the blob store, those no blob row names."""

    def note_orphans(self, orphans: Sequence[tuple[str, str | None]], now: float) -> None:
        """Record this full listing's unknown objects (first sightings at ``now``; earlier
        sightings keep their time); forget those no longer listed."""

    def due_orphans(self, seen_before: float) -> list[Orphan]:
        """Recorded orphans first seen at or before ``seen_before``."""

    def collect_orphan(self, orphan: Orphan, delete_bytes: DeleteBytes, dry_run: bool) -> bool:
        """Delete the orphan's bytes if still no blob row names them, holding the digest's row
        (a placeholder if there is none) so that a concurrent push of the digest waits, then
        sees the bytes gone. True if deleted."""
