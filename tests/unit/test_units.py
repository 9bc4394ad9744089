"""Byte counts in binary units (operators' output) and decimal units (the UI)."""

from __future__ import annotations

import pytest

from moorage.units import human_bytes


@pytest.mark.parametrize(
    ("size", "binary", "decimal"),
    [
        (0, "0 B", "0 B"),
        (999, "999 B", "999 B"),
        (1000, "1000 B", "1.0 KB"),
        (1536, "1.5 KiB", "1.5 KB"),
        (5 * 1024**3, "5.0 GiB", "5.4 GB"),
        (3 * 1024**6, "3072.0 PiB", "3458.8 PB"),
    ],
)
def test_human_bytes(size: int, binary: str, decimal: str) -> None:
    assert human_bytes(size) == binary
    assert human_bytes(size, decimal=True) == decimal
