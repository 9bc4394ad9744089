"""Garbage collection: reclaim manifests, blob links, blobs and orphaned objects nothing uses.

Incremental: writes that may drop something's last reference queue it for review in their own
transaction (a manifest delete queues its links, children and referrers; a new blob link is
queued until a manifest uses it; a blob unlink queues the blob). A run reviews what is due, in
dependency order, each decision re-checked in the database (:mod:`moorage.metadata.gc_port`):

1. manifests: referrers whose subject is gone, and untagged manifests that a rule lets go;
2. links: a repository's links to blobs no manifest of that repository references, once their
   grace period (from the last upload, mount or HEAD of the link) has passed;
3. blobs: no link and no reference left: row, then bytes.

A full run also queues whatever is unreferenced but not queued, expires abandoned upload
sessions, and deletes objects of the blob store that no row has named for the grace period.
No SQL and no HTTP here; see docs/gc.md for the safety argument.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moorage.metadata.gc_port import (
    Candidate,
    Collected,
    GcStore,
    ManifestPolicy,
    TagRecord,
)
from moorage.oci.digest import Digest
from moorage.services.jobs import HeldLease, JobLeases, new_holder
from moorage.storage.port import BlobStore

log = logging.getLogger("moorage.gc")

TAGS, MANIFESTS, LINKS, BLOBS, ORPHANS = "tag", "manifest", "link", "blob", "orphan"
KINDS = (TAGS, MANIFESTS, LINKS, BLOBS, ORPHANS)

# Candidates read from the queue at a time; progress (and the lease's renewal) is reported
# after each page, so a page must take well under GC_LEASE_SECONDS / 2 even on S3.
PAGE = 100


@dataclass(frozen=True)
class RetentionRule:
    """Which tags of the repositories it ``applies_to`` go: those not kept by ``keep_tag``
    (tag patterns), not among the ``keep_last`` most recently pushed, and (if set) pushed
    longer than ``remove_older_than`` seconds ago. At least one of ``keep_last`` and
    ``remove_older_than`` is set (else it removes nothing)."""

    applies_to: Callable[[str], bool]
    keep_tag: Callable[[str], bool]
    keep_last: int | None = None
    remove_older_than: float | None = None


def _never(_: str) -> bool:
    return False


def expired_tags(
    tags: Sequence[TagRecord],
    rules: Sequence[RetentionRule],
    now: float,
    immutable: Callable[[str], bool] = _never,
) -> list[TagRecord]:
    """The tags the first rule matching each repository removes. Repositories whose tags are
    immutable are never touched."""
    by_repository: dict[str, list[TagRecord]] = {}
    for record in tags:
        by_repository.setdefault(record.repository, []).append(record)
    doomed: list[TagRecord] = []
    for repository, records in sorted(by_repository.items()):
        rule = next((r for r in rules if r.applies_to(repository)), None)
        if rule is None or (rule.keep_last is None and rule.remove_older_than is None):
            continue
        if immutable(repository):
            continue
        newest_first = sorted(records, key=lambda r: (-r.pushed_at, r.tag))
        recent = newest_first[: rule.keep_last] if rule.keep_last is not None else []
        for record in newest_first:
            if record in recent or rule.keep_tag(record.tag):
                continue
            if (
                rule.remove_older_than is not None
                and record.pushed_at > now - rule.remove_older_than
            ):
                continue
            doomed.append(record)
    return doomed


@dataclass
class Totals:
    count: int = 0
    bytes: int = 0


@dataclass
class GcReport:
    """What a run collected (with ``dry_run``: what it would collect), per kind."""

    dry_run: bool
    full: bool
    grace: float
    totals: dict[str, Totals] = field(default_factory=lambda: {kind: Totals() for kind in KINDS})
    items: list[Collected] = field(default_factory=list)
    queued: int = 0  # unreferenced things a full run found unqueued
    uploads_expired: int = 0
    orphans_seen: int = 0  # unknown objects listed now; deleted once older than the grace
    seconds: float = 0.0
    _blobs_seen: set[str] = field(default_factory=set, repr=False)

    @property
    def bytes_freed(self) -> int:
        """Bytes the blob store gives back: blobs and orphans (manifests live in the
        database; links free nothing by themselves)."""
        return self.totals[BLOBS].bytes + self.totals[ORPHANS].bytes

    def add(self, items: Sequence[Collected]) -> None:
        for item in items:
            if item.kind == BLOBS:
                # A dry run may meet a blob twice: after its last link, and in its own review.
                if item.digest in self._blobs_seen:
                    continue
                self._blobs_seen.add(item.digest)
            self.items.append(item)
            totals = self.totals[item.kind]
            totals.count += 1
            totals.bytes += item.size

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "full": self.full,
            "grace_seconds": self.grace,
            "seconds": round(self.seconds, 3),
            "bytes_freed": self.bytes_freed,
            "totals": {
                kind: {"count": t.count, "bytes": t.bytes} for kind, t in self.totals.items()
            },
            "queued": self.queued,
            "uploads_expired": self.uploads_expired,
            "orphans_seen": self.orphans_seen,
            "items": [
                {
                    "kind": item.kind,
                    "repository": item.repository,
                    "digest": item.digest,
                    "size": item.size,
                    **({"tag": item.tag} if item.tag is not None else {}),
                }
                for item in self.items
            ],
        }


class Collector:
    def __init__(
        self,
        store: GcStore,
        blobs: BlobStore,
        policy: ManifestPolicy,
        expire_uploads: Callable[[], int],
        clock: Callable[[], float] = time.time,
        retention: Sequence[RetentionRule] = (),
        immutable: Callable[[str], bool] = _never,
    ) -> None:
        """``expire_uploads``: ends abandoned upload sessions and stale upload bytes (the
        upload service's own sweep; a full run calls it), returns how many sessions.
        ``retention``: tag rules (first match per repository); ``immutable(repository)``:
        its tags are immutable, so no rule touches them."""
        self.store = store
        self.blobs = blobs
        self.policy = policy
        self.expire_uploads = expire_uploads
        self.clock = clock
        self.retention = tuple(retention)
        self.immutable = immutable

    def run(
        self,
        grace: float,
        dry_run: bool = False,
        full: bool = False,
        progress: Callable[[GcReport], None] | None = None,
    ) -> GcReport:
        """One collection. ``grace``: seconds a link or orphan must have been unused (since its
        upload, mount or HEAD) before it goes. ``progress`` is called after every batch (to
        show progress, or to renew a lease: it may raise to stop the run; everything done so
        far is committed and consistent)."""
        started = time.monotonic()
        report = GcReport(dry_run=dry_run, full=full, grace=grace)
        now = self.clock()
        due_before = now - grace

        def step() -> None:
            if progress is not None:
                progress(report)

        if full and not dry_run:
            report.queued = self.store.enqueue_unreferenced(now)
        if self.retention:
            doomed = expired_tags(self.store.tags(), self.retention, now, self.immutable)
            report.add(self.store.remove_tags(doomed, now, dry_run))
        if not dry_run:
            self.store.enqueue_untagged(self.policy, now)
        step()
        for candidates in self._pages(MANIFESTS, due_before):
            report.add(
                self.store.collect_manifests(candidates, due_before, self.policy, now, dry_run)
            )
            step()
        for candidates in self._pages(LINKS, due_before):
            report.add(self.store.collect_links(candidates, due_before, now, dry_run))
            step()
        # A blob with no link left cannot be reached by any client: due at once.
        for candidates in self._pages(BLOBS, math.inf):
            report.add(self.store.collect_blobs(candidates, self._delete_bytes, dry_run))
            step()
        if full:
            self._sweep_store(report, now, due_before, step)
        report.seconds = time.monotonic() - started
        return report

    def _pages(self, kind: str, due_before: float) -> Any:
        after: Candidate | None = None
        while True:
            page = self.store.due(kind, due_before, after, PAGE)
            if not page:
                return
            yield page
            after = page[-1]

    def _delete_bytes(self, digest: str, location: str | None) -> None:
        self.blobs.delete(Digest.parse(digest), location)

    def _sweep_store(
        self, report: GcReport, now: float, due_before: float, step: Callable[[], None]
    ) -> None:
        """Upload sessions past their expiry, then objects no row knows (two sightings at
        least ``grace`` apart: one may be a push between its bytes and its row)."""
        if not report.dry_run:
            report.uploads_expired = self.expire_uploads()
        found: list[tuple[str, str | None]] = []
        for digest, location in self.blobs.iter_blobs():
            found.append((str(digest), location))
            if len(found) % 1000 == 0:
                step()  # a long listing (a large bucket) keeps the lease too
        unknown = self.store.unknown(found)
        report.orphans_seen = len(unknown)
        if not report.dry_run:
            self.store.note_orphans(unknown, now)
        step()
        for orphan in self.store.due_orphans(due_before):
            size = self.blobs.stat(Digest.parse(orphan.digest), orphan.location) or 0
            if self.store.collect_orphan(orphan, self._delete_bytes, report.dry_run):
                report.add([Collected(ORPHANS, orphan.digest, size)])
            step()


#: The lease one collector at a time holds, across worker processes and nodes.
GC_LEASE = "gc"
#: Held (never released) by the run that last swept the store: while it lasts, runs are not
#: full. So full sweeps happen at most once per ``full_interval`` whichever worker runs them.
GC_FULL_LEASE = "gc.full"
#: Held (never released) by the worker whose turn it is to start the server's periodic
#: collection: taken for most of ``gc.interval``, so that of all the workers and nodes waking
#: up for it, one starts a collector process, not each of them (a spawn costs ~1 s of CPU).
GC_TURN_LEASE = "gc.turn"
# Renewed at every batch once half of it has passed; a collector that dies without releasing
# it holds the others off this long (less when it is known to be dead: see services/liveness.py).
GC_LEASE_SECONDS = 60.0


class CollectorBusy(Exception):
    """Another collector holds the lease (``holder`` until ``until``)."""

    def __init__(self, holder: str, until: float) -> None:
        super().__init__(holder, until)
        self.holder = holder
        self.until = until


def collect_exclusively(
    collector: Collector,
    leases: JobLeases,
    grace: float,
    dry_run: bool = False,
    full: bool | None = None,
    full_interval: float = 86400.0,
    progress: Callable[[GcReport], None] | None = None,
) -> GcReport:
    """One collection under the ``gc`` lease, renewed as it goes (the run stops with
    :class:`~moorage.services.jobs.LeaseLost` if it cannot be). ``full=None``: a full run if
    none ran for ``full_interval`` (cluster-wide). Raises :class:`CollectorBusy`."""
    holder = new_holder()
    lease = HeldLease(leases, GC_LEASE, holder, GC_LEASE_SECONDS, collector.clock)
    if not lease.take():
        held = leases.holder(GC_LEASE)
        raise CollectorBusy(*(held or ("another collector", 0.0)))

    def keep(report: GcReport) -> None:
        lease.keep()
        if progress is not None:
            progress(report)

    try:
        if full is None:
            now = collector.clock()
            # A holder name of its own: acquiring it again must not count as a renewal.
            full = leases.acquire(GC_FULL_LEASE, f"{holder}@{now}", now, now + full_interval)
        return collector.run(grace, dry_run=dry_run, full=full, progress=keep)
    finally:
        lease.release()
