"""Observations added in one go leave a histogram exactly as observe() one by one would: the
guard on the prometheus-client internals that add_observations writes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from moorage.telemetry.batched_histogram import (
    Observations,
    PendingObservations,
    add_observations,
)

BOUNDS = (0.001, 0.01, 0.1, 1.0)
VALUES = (0.0, 0.001, 0.0010001, 0.05, 0.1, 0.5, 1.0, 7.0, 0.002)


def samples(
    histogram: Histogram, registry: CollectorRegistry
) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def test_a_batch_equals_one_observe_per_value() -> None:
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "h", ["route"], buckets=BOUNDS, registry=one_by_one)
    subject = Histogram("h", "h", ["route"], buckets=BOUNDS, registry=batched)
    pending = Observations(BOUNDS)
    for value in VALUES:
        reference.labels("r").observe(value)
        pending.add(value)
    add_observations(subject.labels("r"), pending)
    assert samples(subject, batched) == samples(reference, one_by_one)
    assert ("h_bucket", {"route": "r", "le": "+Inf"}, len(VALUES)) in samples(subject, batched)


def test_pending_observations_reach_the_histogram_at_the_flush_alone() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("t", "t", buckets=BOUNDS, registry=registry)
    pending = PendingObservations(histogram, BOUNDS)
    for value in VALUES:
        pending.record(value)

    def count() -> float:
        return next(v for name, _, v in samples(histogram, registry) if name == "t_count")

    assert count() == 0
    pending.flush()
    assert count() == len(VALUES)
    pending.flush()  # nothing new: nothing added
    assert count() == len(VALUES)
