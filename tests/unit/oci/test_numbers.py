"""ASCII decimal parsing for Content-Length and ?n=."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.oci.numbers import parse_decimal


@pytest.mark.parametrize("text", ["0", "7", "0042", "1234567890123456789"])
def test_ascii_digits_parse(text: str) -> None:
    assert parse_decimal(text) == int(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u00b2",
        "\u0663",
        "\uff11",
        "1_000",
        " 1",
        "1 ",
        "+1",
        "-1",
        "1e3",
        "12345678901234567890",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    assert parse_decimal(text) is None


def test_digit_limit() -> None:
    assert parse_decimal("1234", max_digits=3) is None
    assert parse_decimal("123", max_digits=3) == 123


@given(st.text(max_size=25))
def test_never_raises_and_accepts_only_ascii_digits(text: str) -> None:
    value = parse_decimal(text)
    assert (value is not None) == (0 < len(text) <= 19 and all(c in "0123456789" for c in text))
