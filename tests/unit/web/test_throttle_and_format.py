"""Sign-in throttling and how sizes and times read."""

from __future__ import annotations

import pytest

from moorage.web.format import exact_time, human_size, percent, relative_time, short_digest
from moorage.web.throttle import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_per_user_are_limited_in_a_sliding_window() -> None:
    clock = Clock()
    throttle = SignInThrottle(per_user=3, per_address=10, window_seconds=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("ann", "10.0.0.1") == 0
        throttle.failed("ann", "10.0.0.1")
    assert throttle.retry_after("ann", "10.0.0.2") == 60
    assert throttle.retry_after("bob", "10.0.0.1") == 0
    clock.now += 59
    assert throttle.retry_after("ann", "10.0.0.3") == 1
    clock.now += 1
    assert throttle.retry_after("ann", "10.0.0.3") == 0


def test_failures_per_address_are_limited_across_users() -> None:
    throttle = SignInThrottle(per_user=100, per_address=2, window_seconds=60, clock=Clock())
    throttle.failed("ann", "10.0.0.1")
    throttle.failed("bob", "10.0.0.1")
    assert throttle.retry_after("carol", "10.0.0.1") > 0
    assert throttle.retry_after("carol", "10.0.0.2") == 0


def test_success_clears_the_users_count_but_not_the_addresss() -> None:
    throttle = SignInThrottle(per_user=1, per_address=1, window_seconds=60, clock=Clock())
    throttle.failed("ann", "a")
    throttle.succeeded("ann")
    assert throttle.retry_after("ann", "b") == 0
    assert throttle.retry_after("zed", "a") > 0


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (1536, "1.5 KB"),
        (2_500_000, "2.5 MB"),
        (7 * 10**9, "7.0 GB"),
        (10**18, "1000.0 PB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (-5, "just now"),
        (59, "just now"),
        (60, "1 minute ago"),
        (7200, "2 hours ago"),
        (86400 * 3, "3 days ago"),
        (86400 * 400, "1 year ago"),
    ],
)
def test_relative_time(ago: float, text: str) -> None:
    assert relative_time(1_000_000_000 - ago, now=1_000_000_000) == text


def test_exact_time_and_short_digest() -> None:
    assert exact_time(0) == "1970-01-01 00:00:00 UTC"
    assert relative_time(None) == "never"
    assert short_digest("sha256:" + "ab" * 32) == "sha256:abababababab"


@pytest.mark.parametrize(
    ("fraction", "text"),
    [(None, ""), (0.0, "0%"), (0.4239, "42%"), (0.999, "99%"), (1.0, "100%"), (1.3, "130%")],
)
def test_percent_is_rounded_down_so_100_means_at_the_limit(
    fraction: float | None, text: str
) -> None:
    assert percent(fraction) == text
