"""Range (blob GET) and Content-Range (upload PATCH) headers."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from moorage.errors import ErrorCode, RegistryError
from moorage.oci.ranges import ByteRange, RangeNotSatisfiable, parse_content_range, parse_range

PROPERTY = settings(max_examples=200, deadline=None)

MAX_19_DIGITS = 10**19 - 1
UNSATISFIABLE = "416"

Outcome = ByteRange | None | str


def reference_range(first: int | None, last: int | None, size: int) -> Outcome:
    """A set-based model of one ``bytes=first-last`` range: which byte offsets does it select?

    ByteRange(min, max) of the selected offsets; "416" when it is malformed (no bound at all,
    or last before first) or selects no byte.
    """
    if first is None and last is None:
        return UNSATISFIABLE
    if first is None:
        assert last is not None
        selected = [i for i in range(size) if i >= size - last]
    else:
        if last is not None and last < first:
            return UNSATISFIABLE
        end = size - 1 if last is None else last
        selected = [i for i in range(size) if first <= i <= end]
    if not selected:
        return UNSATISFIABLE
    return ByteRange(min(selected), max(selected))


def outcome(header: str, size: int) -> Outcome:
    try:
        return parse_range(header, size)
    except RangeNotSatisfiable:
        return UNSATISFIABLE


def header_for(first: int | None, last: int | None) -> str:
    return f"bytes={'' if first is None else first}-{'' if last is None else last}"


# --- ByteRange ---------------------------------------------------------------------------------


def test_byte_range_length_and_content_range() -> None:
    assert ByteRange(0, 0).length == 1
    assert ByteRange(10, 19).length == 10
    assert ByteRange(10, 19).content_range(100) == "bytes 10-19/100"


# --- Range: examples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=0-9", 10, ByteRange(0, 9)),
        ("bytes=0-999", 10, ByteRange(0, 9)),
        ("bytes=5-", 10, ByteRange(5, 9)),
        ("bytes=9-", 10, ByteRange(9, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-10", 10, ByteRange(0, 9)),
        ("bytes=-500", 10, ByteRange(0, 9)),
        ("  bytes=2-4 ", 10, ByteRange(2, 4)),
        (f"bytes=0-{MAX_19_DIGITS}", 10, ByteRange(0, 9)),
        (f"bytes=-{MAX_19_DIGITS}", 10, ByteRange(0, 9)),
        # several ranges: the whole body is sent instead
        ("bytes=0-1,3-4", 10, None),
        ("bytes=0-1, 3-4", 10, None),
        ("bytes=-1,0-0", 0, None),
    ],
)
def test_parse_range_examples(header: str, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        # selects no byte
        ("bytes=10-", 10),
        ("bytes=11-", 10),
        ("bytes=10-20", 10),
        ("bytes=11-11", 10),
        ("bytes=-0", 10),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-5", 0),
        (f"bytes={MAX_19_DIGITS}-", 10),
        (f"bytes={MAX_19_DIGITS}-{MAX_19_DIGITS}", 10),
        # malformed
        ("bytes=-", 10),
        ("bytes=5-4", 10),
        ("items=0-1", 10),
        ("bytes 0-1", 10),
        ("Bytes=0-1", 10),
        ("bytes=a-b", 10),
        ("bytes=0-1-2", 10),
        ("bytes = 0-1", 10),
        ("bytes=0-" + "9" * 20, 10),
        ("", 10),
    ],
)
def test_unsatisfiable_or_malformed_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


# --- Range: properties -------------------------------------------------------------------------

small_positions = st.none() | st.integers(0, 80)


@PROPERTY
@given(first=small_positions, last=small_positions, size=st.integers(0, 60))
def test_parse_range_agrees_with_the_set_model(
    first: int | None, last: int | None, size: int
) -> None:
    assert outcome(header_for(first, last), size) == reference_range(first, last, size)


big_positions = st.none() | st.integers(0, MAX_19_DIGITS)


@PROPERTY
@given(first=big_positions, last=big_positions, size=st.integers(0, 2**63))
def test_parse_range_result_is_within_the_resource(
    first: int | None, last: int | None, size: int
) -> None:
    result = outcome(header_for(first, last), size)
    if isinstance(result, ByteRange):
        assert 0 <= result.first <= result.last <= size - 1
        if first is not None:
            assert result.first == first
            assert result.last == (size - 1 if last is None else min(last, size - 1))
        else:
            assert last is not None
            assert result.last == size - 1
            assert result.length == min(last, size)
    else:
        assert result == UNSATISFIABLE  # one range never means "send everything"
        selectable = (first is not None and first < size and (last is None or last >= first)) or (
            first is None and last is not None and last > 0 and size > 0
        )
        assert not selectable


ASCII_SINGLE_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


@PROPERTY
@given(
    header=st.text(max_size=60)
    | st.from_regex(r"\s*bytes=[0-9]{0,21}-[0-9]{0,21}\s*", fullmatch=True)
    | st.text(alphabet="bytes=-,0123456789 ", max_size=30),
    size=st.integers(0, 200),
)
@example("bytes=\u0661-\u0665", 10)  # non-ASCII decimal digits: refused, never a crash
@example("bytes=,", 10)
def test_parse_range_on_arbitrary_text(header: str, size: int) -> None:
    result = outcome(header, size)  # anything but RangeNotSatisfiable propagates and fails
    if isinstance(result, ByteRange):
        assert 0 <= result.first <= result.last <= size - 1
    if not header.isascii():
        return
    text = header.strip()
    if "," in text:
        parts = text.removeprefix("bytes=").split(",")
        valid = text.startswith("bytes=") and all(
            ASCII_SINGLE_RANGE.fullmatch(f"bytes={part.strip()}") for part in parts
        )
        assert result == (None if valid else UNSATISFIABLE)
    elif match := ASCII_SINGLE_RANGE.fullmatch(text):
        first = int(match.group(1)) if match.group(1) else None
        last = int(match.group(2)) if match.group(2) else None
        assert result == reference_range(first, last, size)
    else:
        assert result == UNSATISFIABLE


# --- Content-Range -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0-0", ByteRange(0, 0)),
        ("0-1023", ByteRange(0, 1023)),
        ("bytes 5-9", ByteRange(5, 9)),
        ("bytes=5-9", ByteRange(5, 9)),
        (" 5-9 ", ByteRange(5, 9)),
        (f"0-{MAX_19_DIGITS}", ByteRange(0, MAX_19_DIGITS)),
    ],
)
def test_parse_content_range_examples(header: str, expected: ByteRange) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "5",
        "5-",
        "-5",
        "9-5",
        "bytes 0-9/10",
        "bytes 0-9/*",
        "a-b",
        "0 - 9",
        "bytes  0-9",
        "0-" + "9" * 20,
    ],
)
def test_parse_content_range_refuses(header: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_content_range(header)
    assert info.value.code is ErrorCode.RANGE_INVALID
    assert info.value.status == 416
    assert info.value.detail == {"range": header}


@PROPERTY
@given(
    first=st.integers(0, MAX_19_DIGITS),
    last=st.integers(0, MAX_19_DIGITS),
    prefix=st.sampled_from(["", "bytes ", "bytes="]),
)
def test_content_range_round_trip(first: int, last: int, prefix: str) -> None:
    header = f"{prefix}{first}-{last}"
    if last >= first:
        result = parse_content_range(header)
        assert result == ByteRange(first, last)
        assert result.length == last - first + 1
    else:
        with pytest.raises(RegistryError) as info:
            parse_content_range(header)
        assert info.value.code is ErrorCode.RANGE_INVALID


@PROPERTY
@given(
    header=st.text(max_size=60)
    | st.from_regex(r"(bytes[ =])?[0-9]{1,21}-[0-9]{1,21}", fullmatch=True)
    | st.text(alphabet="bytes =-/0123456789", max_size=30)
)
def test_parse_content_range_on_arbitrary_text(header: str) -> None:
    try:
        result = parse_content_range(header)
    except RegistryError as error:
        assert error.code is ErrorCode.RANGE_INVALID
        assert error.status == 416
    else:
        assert isinstance(result, ByteRange)
        assert 0 <= result.first <= result.last
