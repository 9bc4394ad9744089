"""Pure S3 backend logic: which segment bytes form an upload, and how failures are named."""

from __future__ import annotations

import pytest

from moorage.storage.port import StorageThrottled
from moorage.storage.s3_errors import classify, is_missing_key
from moorage.storage.segments import Segment, contiguous, extent, parse_segment_name, segment_name


def test_segment_names_sort_numerically_and_round_trip() -> None:
    names = [segment_name(n) for n in (0, 9, 10, 8 * 1024 * 1024)]
    assert sorted(names) == names
    assert [parse_segment_name(n) for n in names] == [0, 9, 10, 8 * 1024 * 1024]
    assert parse_segment_name("12") is None
    assert parse_segment_name("x" * 20) is None


def test_a_later_segment_wins_over_the_tail_of_an_earlier_one() -> None:
    segments = [Segment("a", 0, 10), Segment("b", 6, 4), Segment("c", 10, 5)]
    pieces = contiguous(segments)
    assert [(p.segment.key, p.length) for p in pieces] == [("a", 6), ("b", 4), ("c", 5)]
    assert extent(pieces) == 15


def test_bytes_after_a_gap_do_not_count() -> None:
    assert extent(contiguous([Segment("a", 0, 4), Segment("b", 6, 4)])) == 4
    assert extent(contiguous([Segment("b", 6, 4)])) == 0


def test_a_limit_cuts_the_last_piece() -> None:
    pieces = contiguous([Segment("a", 0, 10), Segment("b", 10, 10)], limit=12)
    assert [(p.segment.key, p.length) for p in pieces] == [("a", 10), ("b", 2)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<Code>NoSuchBucket</Code>", "no such bucket: 'bkt'"),
        ("status code: 403 Forbidden: <Code>AccessDenied</Code>", "access denied"),
        ("<Code>SignatureDoesNotMatch</Code>", "access denied"),
        ("DeleteObjects request failed for key p: Access Denied (code: AccessDenied)", "denied"),
        ("status code: 301 Moved Permanently: <Code>PermanentRedirect</Code>", "wrong region"),
        (
            "<Code>AuthorizationHeaderMalformed</Code> the region 'us-east-1' is wrong",
            "wrong region",
        ),
        ("HTTP error: error sending request", "endpoint unreachable: http://s3"),
        ("status code: 500 Internal Server Error", "failed with HTTP 500"),
    ],
)
def test_failures_are_named_plainly(text: str, message: str) -> None:
    error = classify(text, "bkt", "http://s3")
    assert message in str(error)
    assert not isinstance(error, StorageThrottled)


def test_slow_down_is_throttling() -> None:
    assert isinstance(
        classify("status code: 503 <Code>SlowDown</Code>", "b", "e"), StorageThrottled
    )


def test_a_missing_bucket_is_not_a_missing_object() -> None:
    assert is_missing_key("404 Not Found: <Code>NoSuchKey</Code>")
    assert is_missing_key("404 Not Found: ")  # HEAD answers carry no body
    assert not is_missing_key("404 Not Found: <Code>NoSuchBucket</Code>")
