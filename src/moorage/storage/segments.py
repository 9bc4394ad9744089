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


# --- a blob published in place: its location is the upload's pieces ------------------------------
#
# Copying an upload's bytes to the blob's own key costs a second transfer inside the store (and
# S3 copies at a few hundred MiB/s at best), so a blob may instead stay where its upload wrote
# it. Its *location*, kept in the metadata database, names the upload and the pieces that form
# the blob: ``<upload id>/<start>+<length>[/<start>+<length>...]``.


@dataclass(frozen=True)
class PieceRef:
    """``length`` bytes from the beginning of the segment that starts at ``start``."""

    start: int
    length: int


def encode_location(upload_id: str, pieces: list[Piece]) -> str:
    refs = "/".join(f"{piece.segment.start}+{piece.length}" for piece in pieces)
    return f"{upload_id}/{refs}"


def decode_location(location: str) -> tuple[str, list[PieceRef]] | None:
    """The upload id and pieces of ``location``, or None if it is not one of ours."""
    upload_id, _, rest = location.partition("/")
    if not upload_id or not rest or upload_id.strip("0123456789abcdef"):
        return None
    refs: list[PieceRef] = []
    for text in rest.split("/"):
        start, plus, length = text.partition("+")
        if not plus or not start.isdigit() or not length.isdigit():
            return None
        refs.append(PieceRef(int(start), int(length)))
    return upload_id, refs


def byte_ranges(refs: list[PieceRef], first: int, last: int | None) -> list[tuple[int, int, int]]:
    """For bytes ``first..last`` (inclusive; None: to the end) of the blob the pieces form:
    ``(segment start, offset in segment, end offset in segment)`` for each piece they touch."""
    ranges: list[tuple[int, int, int]] = []
    position = 0
    for ref in refs:
        piece_first, piece_end = position, position + ref.length
        position = piece_end
        low = max(first, piece_first)
        high = piece_end if last is None else min(last + 1, piece_end)
        if low < high:
            ranges.append((ref.start, low - piece_first, high - piece_first))
    return ranges
