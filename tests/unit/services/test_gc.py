"""The garbage collector's rules, on the real metadata store (SQLite and PostgreSQL) and the
filesystem blob store: what goes, what stays, and the races the database must decide."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata import gc_queue
from moorage.metadata import schema as s
from moorage.metadata.gc_port import ManifestPolicy, TagRecord
from moorage.metadata.gc_sql import SqlGcStore
from moorage.metadata.job_leases import SqlJobLeases
from moorage.metadata.records import UploadSession
from moorage.metadata.sql import SqlMetadataStore
from moorage.metadata.usage_sql import SqlUsageStore
from moorage.oci.digest import Digest
from moorage.services.blobs import BlobService, find_linked
from moorage.services.gc import (
    Collector,
    CollectorBusy,
    GcReport,
    RetentionRule,
    collect_exclusively,
    expired_tags,
)
from moorage.services.manifests import ManifestService
from moorage.services.repositories import RepositoryService
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore

REPO = "team/app"
OTHER = "team/other"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
GRACE = 3600.0
DEFAULT = ManifestPolicy()


def _digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def _descriptor(digest: Digest, size: int, media_type: str) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(digest), "size": size}


@dataclass
class Registry:
    metadata: SqlMetadataStore
    blobs: FilesystemBlobStore
    uploads: UploadService
    manifests: ManifestService
    shift: float = 0.0  # seconds the collector's clock runs ahead
    sizes: dict[str, int] = field(default_factory=dict)  # each pushed manifest's length

    def collector(self, policy: ManifestPolicy = DEFAULT) -> Collector:
        return Collector(
            SqlGcStore(self.metadata),
            self.blobs,
            policy,
            self.uploads.expire,
            clock=lambda: time.time() + self.shift,
        )

    def collect(self, policy: ManifestPolicy = DEFAULT, **kwargs: object) -> GcReport:
        return self.collector(policy).run(GRACE, **kwargs)  # type: ignore[arg-type]

    def later(self, seconds: float = GRACE + 1) -> Registry:
        self.shift += seconds
        return self

    def blob(self, repository: str, data: bytes) -> Digest:
        digest = _digest(data)
        self.uploads.put_whole(repository, digest, data)
        return digest

    def image(
        self,
        repository: str,
        tag: str | None,
        *layers: bytes,
        subject: str | None = None,
        push_blobs: bool = True,
    ) -> str:
        """Push config + layers (unless ``push_blobs`` is False) and a manifest (tagged, or
        by digest); its digest."""
        config = b'{"architecture":"amd64","os":"linux","layers":"%s"}' % b"+".join(layers)
        if push_blobs:
            for data in (config, *layers):
                self.blob(repository, data)
        body: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(
                _digest(config), len(config), "application/vnd.oci.image.config.v1+json"
            ),
            "layers": [
                _descriptor(_digest(layer), len(layer), "application/octet-stream")
                for layer in layers
            ],
        }
        if subject is not None:
            body["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
        return self.put(repository, tag, json.dumps(body).encode(), OCI_MANIFEST)

    def put(self, repository: str, tag: str | None, payload: bytes, media_type: str) -> str:
        digest = str(_digest(payload))
        self.manifests.put(repository, tag or digest, payload, media_type)
        self.sizes[digest] = len(payload)
        return digest

    def index(self, repository: str, tag: str | None, *children: str) -> str:
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": child, "size": self.sizes[child]}
                for child in children
            ],
        }
        return self.put(repository, tag, json.dumps(body).encode(), OCI_INDEX)

    def stored(self, data: bytes) -> bool:
        return self.blobs.stat(_digest(data)) is not None

    def has_row(self, data: bytes) -> bool:
        return self.metadata.blob(str(_digest(data))) is not None

    def age_reviews(self, seconds: float) -> None:
        """Make every queued review as old as if its last event was ``seconds`` ago."""
        with self.metadata._write() as conn:
            conn.execute(
                update(s.gc_reviews).values(touched_at=s.gc_reviews.c.touched_at - seconds)
            )


@pytest.fixture
def registry(store: SqlMetadataStore, tmp_path: Path) -> Registry:
    blobs = FilesystemBlobStore(tmp_path / "data")
    return Registry(
        store,
        blobs,
        UploadService(store, blobs, expiry_seconds=86400),
        ManifestService(store, delete_enabled=True),
    )


def test_a_deleted_image_goes_after_the_grace_and_shared_layers_stay(registry: Registry) -> None:
    doomed = registry.image(REPO, "old", b"shared layer", b"own layer")
    registry.image(REPO, "live", b"shared layer", b"live layer")
    registry.manifests.delete(REPO, doomed)

    early = registry.collect()
    assert early.items == [] and registry.stored(b"own layer")  # within the grace

    report = registry.later().collect()
    assert not registry.stored(b"own layer") and not registry.has_row(b"own layer")
    assert registry.stored(b"shared layer") and registry.stored(b"live layer")
    assert report.totals["blob"].count == 2  # own layer and the old config
    assert report.totals["blob"].bytes == len(b"own layer") + len(
        b'{"architecture":"amd64","os":"linux","layers":"shared layer+own layer"}'
    )
    assert registry.manifests.get(REPO, "live") is not None
    assert registry.later().collect().items == []  # nothing left to do


def test_a_blob_linked_in_another_repository_stays(registry: Registry) -> None:
    doomed = registry.image(REPO, "v1", b"layer")
    registry.blob(OTHER, b"layer")
    registry.image(OTHER, "v1", b"layer")
    registry.manifests.delete(REPO, doomed)
    registry.later().collect()
    assert registry.stored(b"layer")
    assert registry.metadata.linked_blob(REPO, str(_digest(b"layer"))) is None
    assert registry.metadata.linked_blob(OTHER, str(_digest(b"layer"))) is not None


def test_an_abandoned_push_is_collected_and_a_head_restarts_its_grace(
    registry: Registry,
) -> None:
    registry.blob(REPO, b"never used")
    registry.blob(REPO, b"seen again")
    registry.age_reviews(GRACE + 10)
    # A client is told the second blob exists: its grace starts again, at the database.
    assert registry.metadata.linked_blob(REPO, str(_digest(b"seen again"))) is not None
    registry.collect()
    assert not registry.stored(b"never used")
    assert registry.stored(b"seen again")
    # ... and it is still there for the manifest that client pushes next.
    registry.image(REPO, "v1", b"seen again")


def test_a_head_right_after_the_push_writes_nothing(registry: Registry) -> None:
    registry.blob(REPO, b"fresh")
    with registry.metadata._read() as conn:
        before = conn.execute(s.gc_reviews.select()).all()
    registry.metadata.linked_blob(REPO, str(_digest(b"fresh")))
    with registry.metadata._read() as conn:
        assert conn.execute(s.gc_reviews.select()).all() == before


def test_a_referenced_link_is_never_collected(registry: Registry) -> None:
    registry.image(REPO, "v1", b"layer")
    registry.age_reviews(10 * GRACE)
    report = registry.later(10 * GRACE).collect()
    assert report.items == [] and registry.stored(b"layer")
    with registry.metadata._read() as conn:
        assert conn.execute(s.gc_reviews.select()).all() == []  # reviewed and found in use


def test_a_manifest_after_the_grace_is_refused_not_left_dangling(registry: Registry) -> None:
    registry.image(REPO, None, b"late layer", push_blobs=True)  # config and layer stored
    registry.manifests.delete(REPO, str(registry.image(REPO, None, b"late layer")))
    registry.age_reviews(GRACE + 10)
    registry.collect()
    with pytest.raises(RegistryError) as info:
        registry.image(REPO, "v1", b"late layer", push_blobs=False)
    assert info.value.code is ErrorCode.MANIFEST_BLOB_UNKNOWN


def test_an_unlinked_blob_goes_unless_a_manifest_references_it(registry: Registry) -> None:
    registry.blob(REPO, b"loose")
    registry.image(REPO, "v1", b"used")
    blobs = BlobService(registry.metadata, registry.blobs, delete_enabled=True)
    blobs.delete(REPO, _digest(b"loose"))
    blobs.delete(REPO, _digest(b"used"))
    registry.collect()  # no grace needed: no link left to be told about
    assert not registry.stored(b"loose")
    assert registry.stored(b"used")


def test_an_index_keeps_its_children_until_it_goes(registry: Registry) -> None:
    keep_untagged_never = ManifestPolicy(untagged_age=lambda _: 0.0)
    child = registry.image(REPO, None, b"arm64 layer")
    index = registry.index(REPO, "multi", child)
    registry.later().collect(keep_untagged_never)
    assert registry.manifests.get(REPO, child) is not None  # a child of a live index
    registry.manifests.delete(REPO, index)
    registry.later().collect(keep_untagged_never)
    with pytest.raises(RegistryError):
        registry.manifests.get(REPO, child)
    registry.later().collect(keep_untagged_never)  # then the child's links, then its blobs
    assert not registry.stored(b"arm64 layer")


def test_untagged_manifests_are_kept_by_default(registry: Registry) -> None:
    untagged = registry.image(REPO, None, b"layer")
    tagged = registry.image(REPO, "v2", b"other layer")
    registry.manifests.delete(REPO, "v2")  # the tag only
    registry.later(30 * 86400).collect(full=True)
    assert registry.manifests.get(REPO, untagged) is not None
    assert registry.manifests.get(REPO, tagged) is not None
    assert registry.stored(b"layer") and registry.stored(b"other layer")


def test_untagged_manifests_go_where_a_rule_says(registry: Registry) -> None:
    policy = ManifestPolicy(untagged_age=lambda repo: 86400.0 if repo == REPO else None)
    gone = registry.image(REPO, None, b"layer")
    tagged = registry.image(REPO, "v1", b"tagged layer")
    elsewhere = registry.image(OTHER, None, b"other layer")
    assert registry.collect(policy).items == []  # not old enough yet
    registry.later(86400 + 1).collect(policy)
    with pytest.raises(RegistryError):
        registry.manifests.get(REPO, gone)
    assert registry.manifests.get(REPO, tagged) is not None
    assert registry.manifests.get(OTHER, elsewhere) is not None
    registry.later().collect(policy)
    assert not registry.stored(b"layer") and registry.stored(b"tagged layer")


def test_referrers_go_with_their_subject_unless_configured_not_to(registry: Registry) -> None:
    subject = registry.image(REPO, "v1", b"image layer")
    signature = registry.image(REPO, None, b"signature layer", subject=subject)
    keep = ManifestPolicy(referrers=False)
    registry.later().collect()
    assert registry.manifests.get(REPO, signature) is not None  # its subject is there
    registry.manifests.delete(REPO, subject)
    registry.later().collect(keep)
    assert registry.manifests.get(REPO, signature) is not None
    registry.image(REPO, "v1", b"image layer")  # the subject again; then deleted again
    registry.manifests.delete(REPO, subject)
    registry.later().collect()
    with pytest.raises(RegistryError):
        registry.manifests.get(REPO, signature)
    registry.later().collect()
    assert not registry.stored(b"signature layer")


def test_a_dry_run_reports_and_changes_nothing(registry: Registry) -> None:
    doomed = registry.image(REPO, "v1", b"layer")
    registry.manifests.delete(REPO, doomed)
    registry.later()
    dry = registry.collect(dry_run=True)
    assert {item.kind for item in dry.items} == {"link", "blob"}
    assert dry.totals["blob"].count == 2
    assert registry.stored(b"layer") and registry.has_row(b"layer")
    real = registry.collect()
    assert real.totals["blob"].count == 2
    assert real.bytes_freed == dry.bytes_freed


def test_a_repository_emptied_without_the_queue_is_found_by_a_full_run(
    registry: Registry,
) -> None:
    registry.image(REPO, "v1", b"layer")
    # As a repository delete that does not queue might leave it, in a registry whose queue
    # was lost (or that predates it).
    with registry.metadata._write() as conn:
        conn.execute(delete(s.gc_reviews))
        conn.execute(delete(s.tags))
        conn.execute(delete(s.manifest_blobs))
        conn.execute(delete(s.manifest_children))
        conn.execute(delete(s.manifests))
    registry.later().collect()
    assert registry.stored(b"layer")  # an incremental run knows nothing of it
    first = registry.collect(full=True)
    assert first.queued == 2  # the two links; their grace starts now
    registry.later().collect()
    assert not registry.stored(b"layer")


def test_orphaned_bytes_go_after_two_sightings_a_grace_apart(registry: Registry) -> None:
    registry.image(REPO, "v1", b"known")
    live = _digest(b"known")
    orphan = _digest(b"orphan")
    path = registry.blobs._blob_path(orphan)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"orphan")
    first = registry.collect(full=True)
    assert first.orphans_seen == 1 and path.exists()
    report = registry.later().collect(full=True)
    assert not path.exists()
    assert report.totals["orphan"].count == 1 and report.totals["orphan"].bytes == 6
    assert registry.blobs.stat(live) is not None


def test_a_failed_byte_delete_loses_nothing_and_the_next_run_finishes(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = registry.image(REPO, "v1", b"first", b"second")
    registry.manifests.delete(REPO, doomed)
    real_delete = registry.blobs.delete
    calls = []

    def failing(digest: Digest, location: str | None = None) -> None:
        calls.append(digest)
        if len(calls) == 2:
            raise OSError("disk went away")
        real_delete(digest, location)

    monkeypatch.setattr(registry.blobs, "delete", failing)
    with pytest.raises(OSError):
        registry.later().collect()
    # The batch was rolled back: every row is still there (one without its bytes, unlinked).
    assert registry.has_row(b"first") and registry.has_row(b"second")
    monkeypatch.setattr(registry.blobs, "delete", real_delete)
    registry.collect()
    assert not registry.has_row(b"first") and not registry.stored(b"first")
    assert not registry.has_row(b"second") and not registry.stored(b"second")


class CollectsBeforeLinking(SqlMetadataStore):
    """The collector runs right between a push finding a blob's bytes and linking them: the
    window a check outside the database could not close."""

    collector: Collector | None = None

    def link_blob(
        self, repository: str, digest: str, size: int, ending: UploadSession | None = None
    ) -> None:
        collector, self.collector = self.collector, None
        if collector is not None:
            collector.run(0.0)
        super().link_blob(repository, digest, size, ending)


def test_a_push_that_loses_its_blob_to_the_collector_fails_cleanly(
    store: SqlMetadataStore, tmp_path: Path
) -> None:
    racing = CollectsBeforeLinking(store.engine)
    blobs = FilesystemBlobStore(tmp_path / "data")
    uploads = UploadService(racing, blobs, expiry_seconds=86400)
    digest = _digest(b"layer")
    uploads.put_whole(REPO, digest, b"layer")
    BlobService(racing, blobs, delete_enabled=True).delete(REPO, digest)  # garbage now
    racing.collector = Collector(SqlGcStore(racing), blobs, ManifestPolicy(), uploads.expire)
    with pytest.raises(RegistryError) as info:
        uploads.put_whole(OTHER, digest, b"layer")  # finds the bytes, then they go
    assert info.value.code is ErrorCode.BLOB_UPLOAD_INVALID
    # Never a link to missing bytes that a manifest could rely on: HEAD says unknown, and
    # the push tried again stores the bytes anew.
    assert blobs.stat(digest) is None
    assert find_linked(racing, blobs, OTHER, digest) is None
    uploads.put_whole(OTHER, digest, b"layer")
    assert blobs.stat(digest) == len(b"layer")


def test_a_mount_of_a_just_collected_blob_is_no_mount(registry: Registry) -> None:
    digest = registry.blob(REPO, b"layer")
    registry.age_reviews(GRACE + 10)
    finder = registry.uploads.mount
    registry.collect()
    assert finder(OTHER, digest, REPO) is False


def test_one_collector_at_a_time(registry: Registry) -> None:
    leases = SqlJobLeases(registry.metadata)
    now = time.time()
    assert leases.acquire("gc", "someone else", now, now + 60)
    with pytest.raises(CollectorBusy) as info:
        collect_exclusively(registry.collector(), leases, GRACE)
    assert info.value.holder == "someone else"
    assert not leases.acquire("gc", "a third", now + 30, now + 90)
    assert leases.acquire("gc", "a third", now + 61, now + 120)  # the first one's ran out
    leases.release("gc", "a third")
    report = collect_exclusively(registry.collector(), leases, GRACE, full=False)
    assert not report.full
    assert leases.holder("gc") is None  # released


def test_full_sweeps_are_spaced_across_collectors(registry: Registry) -> None:
    leases = SqlJobLeases(registry.metadata)
    first = collect_exclusively(registry.collector(), leases, GRACE, full_interval=3600)
    second = collect_exclusively(registry.collector(), leases, GRACE, full_interval=3600)
    assert first.full and not second.full


# PostgreSQL only: on SQLite writers take turns, so the collector cannot run beside a push.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_link_a_manifest_push_holds_is_skipped_not_waited_for(registry: Registry) -> None:
    digest = str(registry.blob(REPO, b"layer"))
    registry.age_reviews(GRACE + 10)
    rb = s.repository_blobs
    with registry.metadata.engine.connect() as conn, conn.begin():
        # What put_manifest holds while it checks the blobs a manifest references.
        conn.execute(select(rb.c.digest).where(rb.c.digest == digest).with_for_update(read=True))
        outcome: list[GcReport] = []
        runner = threading.Thread(target=lambda: outcome.append(registry.collect()))
        runner.start()
        runner.join(timeout=20)
        assert outcome and outcome[0].items == []  # finished, and left the busy link alone
    report = registry.collect()  # the push is over (it failed to commit a manifest here)
    assert {item.kind for item in report.items} == {"link", "blob"}
    assert not registry.stored(b"layer")


# --- retention rules -----------------------------------------------------------------------


def _rule(
    keep_last: int | None = None,
    keep_tags: tuple[str, ...] = (),
    remove_older_than: float | None = None,
    prefix: str = "team/",
) -> RetentionRule:
    return RetentionRule(
        applies_to=lambda repo: repo.startswith(prefix),
        keep_tag=lambda tag: any(fnmatch.fnmatchcase(tag, p) for p in keep_tags),
        keep_last=keep_last,
        remove_older_than=remove_older_than,
    )


def _tags(*pushed: tuple[str, float], repository: str = REPO) -> list[TagRecord]:
    return [TagRecord(repository, tag, f"sha256:{tag}", at) for tag, at in pushed]


NOW = 1_000_000.0


def test_retention_keeps_the_most_recently_pushed() -> None:
    tags = _tags(("a", NOW - 5), ("b", NOW - 1), ("c", NOW - 3), ("d", NOW - 9))
    doomed = expired_tags(tags, [_rule(keep_last=2)], NOW)
    assert [t.tag for t in doomed] == ["a", "d"]


def test_retention_keeps_matching_tags_and_removes_old_ones() -> None:
    tags = _tags(
        ("v1.0", NOW - 90 * 86400),
        ("latest", NOW - 90 * 86400),
        ("pr-7", NOW - 40 * 86400),
        ("pr-8", NOW - 86400),
    )
    rule = _rule(keep_tags=("v*", "latest"), remove_older_than=30 * 86400.0)
    assert [t.tag for t in expired_tags(tags, [rule], NOW)] == ["pr-7"]


def test_retention_with_both_keeps_the_last_n_even_when_old() -> None:
    tags = _tags(("old1", NOW - 100), ("old2", NOW - 200), ("old3", NOW - 300))
    rule = _rule(keep_last=1, remove_older_than=150.0)
    assert [t.tag for t in expired_tags(tags, [rule], NOW)] == ["old2", "old3"]


def test_retention_first_matching_rule_wins_and_others_are_untouched() -> None:
    tags = _tags(("a", NOW - 5), ("b", NOW - 1)) + _tags(("x", NOW - 5), repository="other/x")
    rules = [_rule(keep_last=5), _rule(keep_last=0, prefix="")]
    assert [t.tag for t in expired_tags(tags, rules, NOW)] == ["x"]


def test_retention_never_touches_immutable_tags() -> None:
    tags = _tags(("a", NOW - 5), ("b", NOW - 1))
    assert expired_tags(tags, [_rule(keep_last=0)], NOW, immutable=lambda r: r == REPO) == []


def test_retention_removes_tags_and_the_images_they_leave_untagged(registry: Registry) -> None:
    child = registry.image(REPO, "pr-child", b"child layer")
    registry.index(REPO, "v-multi", child)
    old = registry.image(REPO, "pr-1", b"old layer")
    registry.put(REPO, "pr-1b", registry.manifests.get(REPO, old).payload, OCI_MANIFEST)
    kept = registry.image(REPO, "v1", b"release layer")
    newest = registry.image(REPO, "pr-2", b"new layer")
    collector = registry.collector()
    collector.retention = (_rule(keep_last=1, keep_tags=("v*",)),)

    dry = collector.run(GRACE, dry_run=True)
    assert {(i.tag, i.digest) for i in dry.items if i.kind == "tag"} == {
        ("pr-1", old),
        ("pr-1b", old),
        ("pr-child", child),
    }
    assert registry.manifests.get(REPO, "pr-1") is not None  # a dry run changes nothing

    report = collector.run(GRACE)
    assert report.totals["tag"].count == 3
    assert [i.digest for i in report.items if i.kind == "manifest"] == [old]
    with pytest.raises(RegistryError):
        registry.manifests.get(REPO, old)
    assert registry.manifests.get(REPO, child) is not None  # an index still lists it
    assert registry.manifests.get(REPO, kept) is not None
    assert registry.manifests.get(REPO, newest) is not None
    registry.later().collect()
    assert not registry.stored(b"old layer") and registry.stored(b"child layer")


def test_retention_leaves_a_tag_pushed_again_since_it_looked(registry: Registry) -> None:
    first = registry.image(REPO, "pr-1", b"first")
    record = next(t for t in SqlGcStore(registry.metadata).tags() if t.tag == "pr-1")
    time.sleep(0.01)
    registry.put(REPO, "pr-1", registry.manifests.get(REPO, first).payload, OCI_MANIFEST)
    assert SqlGcStore(registry.metadata).remove_tags([record], time.time(), False) == []
    assert registry.manifests.get(REPO, "pr-1") is not None


def test_a_deleted_repository_is_reclaimed_without_a_full_run(registry: Registry) -> None:
    registry.image(REPO, "v1", b"only here", b"shared")
    registry.image(OTHER, "v1", b"shared")
    RepositoryService(SqlUsageStore(registry.metadata)).delete(REPO)
    registry.collect(full=False)  # the delete queued what the repository kept alive
    assert not registry.stored(b"only here") and not registry.has_row(b"only here")
    assert registry.stored(b"shared")  # still used by the other repository
    assert registry.manifests.get(OTHER, "v1") is not None


# --- a push racing the collection of its own manifest (PostgreSQL) ---------------------------


def _wait_for_a_lock_wait(store: SqlMetadataStore) -> bool:
    """Whether some other session of this database is waiting for a row lock (within 10 s)."""
    deadline = time.monotonic() + 10
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return True
        time.sleep(0.02)
    return False


# PostgreSQL only: on SQLite writers take turns, so a push cannot run inside a collection.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_push_of_the_manifest_the_collector_is_removing_succeeds(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector has locked an untagged manifest and is deleting it when a client pushes
    the same image again, with a tag: the push waits for the collector, then stores the
    manifest anew (never a foreign-key or unique violation, which the API would answer 500)."""
    layer = b"layer"
    digest = registry.image(REPO, None, layer)  # by digest: untagged
    payload = registry.metadata.get_manifest(REPO, digest, by_digest=True)
    assert payload is not None
    outcome: list[object] = []

    def push_again() -> None:
        try:
            registry.manifests.put(REPO, "again", payload.payload, OCI_MANIFEST)
            outcome.append("ok")
        except Exception as error:  # what the API would answer 500 (or an OCI error)
            outcome.append(error)

    pusher = threading.Thread(target=push_again)
    remove = gc_queue.remove_manifest

    def remove_while_a_push_waits(*args: Any) -> None:
        # The collector holds the manifest's row lock (FOR UPDATE) here, before its delete.
        pusher.start()
        assert _wait_for_a_lock_wait(registry.metadata), "the push did not wait for the lock"
        remove(*args)

    monkeypatch.setattr(gc_queue, "remove_manifest", remove_while_a_push_waits)
    report = registry.collect(ManifestPolicy(untagged_age=lambda _: 0.0))
    pusher.join(timeout=30)
    monkeypatch.undo()
    assert outcome == ["ok"], outcome
    assert [item.kind for item in report.items] == ["manifest"]  # the old row went
    # The push stands: its tag names the manifest, and its blobs outlive later collections.
    found = registry.metadata.get_manifest(REPO, "again", by_digest=False)
    assert found is not None and found.digest == digest
    registry.later().collect()
    assert registry.stored(layer)
    assert registry.metadata.get_manifest(REPO, digest, by_digest=True) is not None


# PostgreSQL only, as above.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_push_that_needs_a_link_the_collector_is_deleting_is_told_to_push_the_blob(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector has deleted an abandoned link (not yet committed) when a manifest that
    references the blob is pushed: the push waits for the collector, then is refused with
    MANIFEST_BLOB_UNKNOWN (push the blob again), never a 500 and never a manifest with a hole."""
    config = b'{"architecture":"amd64","os":"linux","layers":"layer"}'
    registry.blob(REPO, config)
    registry.blob(REPO, b"layer")
    registry.age_reviews(GRACE + 10)
    outcome: list[object] = []

    def push_manifest() -> None:
        try:
            registry.image(REPO, "late", b"layer", push_blobs=False)
            outcome.append("ok")
        except Exception as error:
            outcome.append(error)

    pusher = threading.Thread(target=push_manifest)
    enqueue_blob = gc_queue.enqueue_blob

    def enqueue_while_a_push_waits(conn: Any, digest: str) -> None:
        # A link's delete queues its blob: the link's row is deleted, locked, uncommitted.
        if not pusher.is_alive() and not outcome:
            pusher.start()
            assert _wait_for_a_lock_wait(registry.metadata), "the push did not wait"
        enqueue_blob(conn, digest)

    monkeypatch.setattr(gc_queue, "enqueue_blob", enqueue_while_a_push_waits)
    registry.collect()
    pusher.join(timeout=30)
    monkeypatch.undo()
    assert len(outcome) == 1 and isinstance(outcome[0], RegistryError), outcome
    assert outcome[0].code is ErrorCode.MANIFEST_BLOB_UNKNOWN
    assert registry.metadata.get_manifest(REPO, "late", by_digest=False) is None


# --- what changed between the queue's read and the collector's transaction ------------------
# The collector reads a page of due candidates, then reviews them in its write transactions:
# whatever a request changed in between must be seen by the review.


def _reviews(registry: Registry) -> set[tuple[str, str]]:
    with registry.metadata._read() as conn:
        rows = conn.execute(select(s.gc_reviews.c.kind, s.gc_reviews.c.digest)).all()
    return {(row.kind, row.digest) for row in rows}


def test_links_used_or_seen_since_the_queue_was_read_stay(registry: Registry) -> None:
    config = b'{"architecture":"amd64","os":"linux","layers":"used meanwhile"}'
    for data in (b"abandoned", b"used meanwhile", config, b"seen meanwhile"):
        registry.blob(REPO, data)
    registry.age_reviews(GRACE + 10)
    gc = SqlGcStore(registry.metadata)
    now = time.time()
    candidates = gc.due("link", now - GRACE, None, 100)
    assert len(candidates) == 4
    # Meanwhile a manifest starts using two of the links, and a client is told a third exists.
    registry.image(REPO, "v1", b"used meanwhile", push_blobs=False)
    assert registry.metadata.linked_blob(REPO, str(_digest(b"seen meanwhile"))) is not None

    collected = gc.collect_links(candidates, now - GRACE, now, dry_run=False)

    assert [(c.kind, c.digest) for c in collected] == [("link", str(_digest(b"abandoned")))]
    for data in (b"used meanwhile", config, b"seen meanwhile"):
        assert find_linked(registry.metadata, registry.blobs, REPO, _digest(data)) is not None
    # The links found in use left the queue; the one seen keeps its (restarted) review; the
    # abandoned one's blob is queued, due at once.
    assert _reviews(registry) == {
        ("link", str(_digest(b"seen meanwhile"))),
        ("blob", str(_digest(b"abandoned"))),
    }
    registry.image(REPO, "v2", b"seen meanwhile")  # still there for that client's manifest


def test_a_blob_linked_again_since_the_queue_was_read_stays(registry: Registry) -> None:
    for data in (b"gone", b"back"):
        registry.blob(REPO, data)
    blobs = BlobService(registry.metadata, registry.blobs, delete_enabled=True)
    for data in (b"gone", b"back"):
        blobs.delete(REPO, _digest(data))  # unlinked: the blobs are queued, due at once
    gc = SqlGcStore(registry.metadata)
    candidates = gc.due("blob", math.inf, None, 100)
    assert len(candidates) == 2
    registry.blob(OTHER, b"back")  # pushed again, elsewhere: linked to the same bytes

    def delete_bytes(digest: str, location: str | None) -> None:
        registry.blobs.delete(Digest.parse(digest), location)

    collected = gc.collect_blobs(candidates, delete_bytes, dry_run=False)

    assert [(c.kind, c.digest) for c in collected] == [("blob", str(_digest(b"gone")))]
    assert not registry.stored(b"gone") and not registry.has_row(b"gone")
    assert registry.stored(b"back") and registry.has_row(b"back")
    assert find_linked(registry.metadata, registry.blobs, OTHER, _digest(b"back")) is not None
    assert ("blob", str(_digest(b"back"))) not in _reviews(registry)  # reviewed: in use


def test_a_dry_run_counts_what_the_run_collects(registry: Registry) -> None:
    """Links of one image whose blobs other images keep (in this repository and another),
    next to blobs nothing else uses: the dry run reports the same links and blobs, with the
    same sizes, as the run that follows."""
    doomed = registry.image(REPO, "old", b"shared here", b"shared there", b"own 1", b"own 2")
    registry.image(REPO, "live", b"shared here")
    registry.blob(OTHER, b"shared there")
    registry.image(OTHER, "live", b"shared there")
    registry.blob(REPO, b"abandoned")
    registry.manifests.delete(REPO, doomed)
    registry.later()

    dry = registry.collect(dry_run=True)
    real = registry.collect()

    def kinds(report: GcReport) -> dict[str, set[tuple[str, int]]]:
        found: dict[str, set[tuple[str, int]]] = {}
        for item in report.items:
            found.setdefault(item.kind, set()).add((item.digest, item.size))
        return found

    assert kinds(dry) == kinds(real)
    # The old config and three of its layers ("live" uses "shared here"), and the abandoned one.
    assert real.totals["link"].count == 5
    assert {d for d, _ in kinds(real)["blob"]} == {
        str(_digest(data))
        for data in (
            b'{"architecture":"amd64","os":"linux","layers":"shared here+shared there+own 1'
            b'+own 2"}',
            b"own 1",
            b"own 2",
            b"abandoned",
        )
    }
    assert dry.bytes_freed == real.bytes_freed
