"""An upload kept as segment objects, one per append: which bytes of which segment count.

Object stores cannot append or truncate, so each append writes one object named by the offset
it starts at. An append that was interrupted after its object completed, but before its offset
was recorded, is overwritten by the next append from the recorded offset: a later segment wins
over the tail of an earlier one. Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# Offsets zero-padded so that the store's lexical listing order is numeric order.
OFFSET_DIGITS = 20


def segment_name(offset: int) -> str:
    return f"{offset:0{OFFSET_DIGITS}d}"


def parse_segment_name(name: str) -> int | None:
    if len(name) != OFFSET_DIGITS or not name.isdigit():
        return None
    return int(name)


@dataclass(frozen=True)
class Segment:
    key: str
    start: int
    size: int


@dataclass(frozen=True)
class Piece:
    """``length`` bytes from the beginning of ``segment`` (the part of it that counts)."""

    segment: Segment
    length: int


def contiguous(segments: list[Segment], limit: int | None = None) -> list[Piece]:
    """The pieces that form the upload's bytes from offset 0, up to ``limit`` bytes.

    Stops at the first gap (a segment shorter than the distance to the next one, or a first
    segment not at 0): bytes after a gap were never acknowledged as contiguous."""
    ordered = sorted(segments, key=lambda s: s.start)
    pieces: list[Piece] = []
    position = 0
    for index, segment in enumerate(ordered):
        if segment.start != position:
            break
        following = ordered[index + 1].start if index + 1 < len(ordered) else None
        end = segment.start + segment.size
        if following is not None:
            end = min(end, following)
        if limit is not None:
            end = min(end, limit)
        if end > position or segment.size == 0:
            pieces.append(Piece(segment, end - position))
        position = end
        if limit is not None and position >= limit:
            break
        if following is not None and end < following:
            break
    return pieces


def extent(pieces: list[Piece]) -> int:
    return sum(piece.length for piece in pieces)
