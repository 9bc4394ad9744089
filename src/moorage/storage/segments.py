"""An upload kept as segment objects, one per append: which bytes of which segment count.

Object stores cannot append or truncate, so each append writes one object named by the offset
it starts at and by the *claim* that wrote it (``<offset>.<claim>``; one claim per request that
held the session's lease). The database records the claims whose appends counted (the session's
``appends``), and only their segments are read: a holder that was presumed dead but still ran
(cut off from the database, say) may finish its segment after another holder took the session
over, and that object, under a name of its own, is ignored and removed with the upload,
instead of overwriting the new holder's bytes. Segments named by their offset alone were written
before claims were recorded and always count.

An append that was interrupted after its object completed, but before its offset was recorded,
is left out the same way. Within the segments that count a later segment wins over the tail of
an earlier one. Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# Offsets zero-padded so that the store's lexical listing order is numeric order.
OFFSET_DIGITS = 20


def segment_name(offset: int, claim: str | None = None) -> str:
    name = f"{offset:0{OFFSET_DIGITS}d}"
    return f"{name}.{claim}" if claim else name


def parse_segment_name(name: str) -> int | None:
    """The offset of a segment named by its offset alone."""
    if len(name) != OFFSET_DIGITS or not name.isdigit():
        return None
    return int(name)


def parse_segment(name: str) -> tuple[int, str | None] | None:
    """The offset and claim (None: none in the name) of a segment's name, None if not one."""
    offset, dot, claim = name.partition(".")
    start = parse_segment_name(offset)
    if start is None or (dot and not is_claim(claim)):
        return None
    return start, claim or None


def is_claim(text: str) -> bool:
    return 0 < len(text) <= 32 and not text.strip("0123456789abcdef")


@dataclass(frozen=True)
class Segment:
    key: str
    start: int
    size: int
    claim: str | None = None


def counted(segments: list[Segment], appends: tuple[str, ...] | None) -> list[Segment]:
    """The segments whose bytes may count: those of the recorded claims (``appends``; None:
    a session from before claims were recorded, all count) and those without a claim."""
    if appends is None:
        return segments
    recorded = set(appends)
    return [s for s in segments if s.claim is None or s.claim in recorded]


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
# the blob: ``<upload id>/<start>[.<claim>]+<length>[/<start>[.<claim>]+<length>...]``.


@dataclass(frozen=True)
class PieceRef:
    """``length`` bytes from the beginning of the segment that starts at ``start`` (written
    by ``claim``)."""

    start: int
    length: int
    claim: str | None = None

    @property
    def name(self) -> str:
        return segment_name(self.start, self.claim)


def encode_location(upload_id: str, pieces: list[Piece]) -> str:
    refs = "/".join(
        f"{p.segment.start}{'.' + p.segment.claim if p.segment.claim else ''}+{p.length}"
        for p in pieces
    )
    return f"{upload_id}/{refs}"


def decode_location(location: str) -> tuple[str, list[PieceRef]] | None:
    """The upload id and pieces of ``location``, or None if it is not one of ours."""
    upload_id, _, rest = location.partition("/")
    if not upload_id or not rest or upload_id.strip("0123456789abcdef"):
        return None
    refs: list[PieceRef] = []
    for text in rest.split("/"):
        segment, plus, length = text.partition("+")
        start, dot, claim = segment.partition(".")
        if not plus or not start.isdigit() or not length.isdigit():
            return None
        if dot and not is_claim(claim):
            return None
        refs.append(PieceRef(int(start), int(length), claim or None))
    return upload_id, refs


def byte_ranges(refs: list[PieceRef], first: int, last: int | None) -> list[tuple[str, int, int]]:
    """For bytes ``first..last`` (inclusive; None: to the end) of the blob the pieces form:
    ``(segment name, offset in segment, end offset in segment)`` for each piece they touch."""
    ranges: list[tuple[str, int, int]] = []
    position = 0
    for ref in refs:
        piece_first, piece_end = position, position + ref.length
        position = piece_end
        low = max(first, piece_first)
        high = piece_end if last is None else min(last + 1, piece_end)
        if low < high:
            ranges.append((ref.name, low - piece_first, high - piece_first))
    return ranges
