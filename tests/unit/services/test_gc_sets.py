"""On SQLite the collector reviews links and blobs a batch at a time, with set statements
(metadata/gc_sets.py); PostgreSQL keeps one candidate at a time. Both must leave the same
registry behind and report the same things: here the same history is played on two SQLite
databases, one collected each way."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from moorage.metadata import schema as s
from moorage.metadata.gc_sql import BatchSize
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.blobs import BlobService
from moorage.services.gc import GcReport
from moorage.services.manifests import ManifestService
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from tests.unit.services.test_gc import GRACE, OTHER, REPO, Registry, _digest


def _registry(root: Path) -> Registry:
    root.mkdir()
    engine = make_engine(f"sqlite:///{root / 'moorage.db'}")
    upgrade(engine)
    store = SqlMetadataStore(engine)
    blobs = FilesystemBlobStore(root / "data")
    return Registry(
        store,
        blobs,
        UploadService(store, blobs, expiry_seconds=86400),
        ManifestService(store, delete_enabled=True),
    )


def _history(registry: Registry) -> None:
    """Images deleted, kept, sharing layers across repositories; abandoned and unlinked blobs;
    some reviews due, some not."""
    for n in range(30):
        digest = registry.image(REPO, f"v{n}", b"base", b"layer %d" % n, b"layer %d" % (n % 7))
        if n % 3 == 0:
            registry.manifests.delete(REPO, digest)
    registry.blob(OTHER, b"base")
    registry.image(OTHER, "live", b"base", b"layer 3")
    for n in range(12):
        registry.blob(OTHER, b"abandoned %d" % n)
    unlink = BlobService(registry.metadata, registry.blobs, delete_enabled=True)
    unlink.delete(OTHER, _digest(b"abandoned 0"))
    unlink.delete(REPO, _digest(b"layer 1"))  # used by a live image: the blob stays
    registry.age_reviews(GRACE + 10)
    registry.blob(OTHER, b"abandoned 5")  # pushed again: its grace starts again


def _state(registry: Registry) -> dict[str, list[tuple[object, ...]]]:
    tables = (s.gc_reviews, s.repository_blobs, s.blobs, s.manifests)
    with registry.metadata._read() as conn:
        return {
            table.name: sorted(
                tuple(v for k, v in row._mapping.items() if k not in ("touched_at", "created_at"))
                for row in conn.execute(select(table))
            )
            for table in tables
        }


def _collect(registry: Registry, sets: bool, dry_run: bool) -> GcReport:
    collector = registry.collector()
    collector.store._sets = sets  # type: ignore[attr-defined]
    return collector.run(GRACE, dry_run=dry_run)


@pytest.mark.parametrize("dry_run", [False, True])
def test_set_based_reviews_do_what_per_candidate_reviews_do(tmp_path: Path, dry_run: bool) -> None:
    each, sets = _registry(tmp_path / "each"), _registry(tmp_path / "sets")
    for registry in (each, sets):
        _history(registry)
    assert _state(each) == _state(sets)

    for _ in range(2):  # the second run finds what the first left (or, dry, the same again)
        by_each = _collect(each, sets=False, dry_run=dry_run)
        by_sets = _collect(sets, sets=True, dry_run=dry_run)
        assert by_sets.items == by_each.items
        assert by_sets.totals == by_each.totals
        assert _state(sets) == _state(each)
    assert by_each.items if dry_run else not by_each.items
    if not dry_run:
        assert not sets.stored(b"layer 9") and not sets.stored(b"abandoned 1")
        assert sets.stored(b"layer 0") and sets.stored(b"base") and sets.stored(b"abandoned 5")


def test_a_batch_grows_to_what_fits_in_the_batch_time_and_shrinks_after_long_holds() -> None:
    size = BatchSize(seconds=0.001, limit=100)
    assert size.size == 1
    sizes = []
    for _ in range(8):  # 20 us a candidate: 50 fit, reached by doubling
        size.observe(size.size, size.size * 20e-6)
        sizes.append(size.size)
    assert sizes == [2, 4, 8, 16, 32, 50, 50, 50]
    size.observe(size.size, 0.020)  # one slow hold (a preemption): smaller, not down to 1
    assert 1 < size.size < 50
    for _ in range(20):  # bytes on S3: 20 ms each
        size.observe(size.size, size.size * 0.020)
    assert size.size == 1
    fast = BatchSize(seconds=0.001, limit=100)
    for _ in range(10):
        fast.observe(fast.size, 0.0)
    assert fast.size == 100  # never more than the limit
