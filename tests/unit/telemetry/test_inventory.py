"""The inventory gauges are recounted at most every max_age seconds, and a failed count leaves
them out instead of failing the scrape."""

from __future__ import annotations

from moorage.metadata.records import Inventory
from moorage.telemetry.inventory import InventoryCollector


def test_counts_are_cached_for_max_age() -> None:
    calls: list[int] = []
    now = [100.0]

    def count() -> Inventory:
        calls.append(1)
        return Inventory(len(calls), 2, 3, 4, 5)

    collector = InventoryCollector(count, 30.0, clock=lambda: now[0])
    first = {m.name: m.samples[0].value for m in collector.collect()}
    now[0] += 29.0
    assert {m.name: m.samples[0].value for m in collector.collect()} == first
    now[0] += 1.0
    assert next(iter(collector.collect())).samples[0].value == 2
    assert len(calls) == 2
    assert first == {
        "moorage_repositories": 1,
        "moorage_manifests": 2,
        "moorage_tags": 3,
        "moorage_uploads_in_progress": 4,
        "moorage_blob_stored_bytes": 5,
    }


def test_a_failed_count_leaves_the_gauges_out() -> None:
    def count() -> Inventory:
        raise OSError("database gone")

    assert list(InventoryCollector(count, 0.0).collect()) == []
