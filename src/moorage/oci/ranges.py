"""Byte ranges: the ``Range`` header of blob GETs and the ``Content-Range`` of upload PATCHes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.errors import ErrorCode, RegistryError

_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive range ``first..last`` of a resource of ``size`` bytes."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


class RangeNotSatisfiable(Exception):
    """The Range header is malformed or selects no byte of the resource (416)."""


def parse_range(header: str, size: int) -> ByteRange | None:
    """Resolve a ``Range`` header against a resource of ``size`` bytes.

    Returns None when the whole resource should be sent instead (a list of several ranges:
    RFC 9110 lets a server answer 200 with the whole body), else the one :class:`ByteRange`.
    Raises :class:`RangeNotSatisfiable` when the header is malformed or selects no byte (416,
    as distribution answers too).
    """
    text = header.strip()
    if "," in text:
        parts = text.removeprefix("bytes=").split(",")
        if text.startswith("bytes=") and all(_RANGE.fullmatch(f"bytes={p.strip()}") for p in parts):
            return None
        raise RangeNotSatisfiable(header)
    match = _RANGE.fullmatch(text)
    if match is None:
        raise RangeNotSatisfiable(header)
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        if not last_text or int(last_text) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(0, size - int(last_text)), size - 1)
    first = int(first_text)
    if first >= size or (last_text and int(last_text) < first):
        raise RangeNotSatisfiable(header)
    last = min(int(last_text), size - 1) if last_text else size - 1
    return ByteRange(first, last)


def parse_content_range(header: str) -> ByteRange:
    """Parse an upload chunk's ``Content-Range: <first>-<last>`` (inclusive); 416 if malformed."""
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise RegistryError(
            ErrorCode.RANGE_INVALID, "Content-Range must be <first>-<last>", {"range": header}
        )
    first, last = int(match.group(1)), int(match.group(2))
    if last < first:
        raise RegistryError(
            ErrorCode.RANGE_INVALID, "Content-Range ends before it starts", {"range": header}
        )
    return ByteRange(first, last)
