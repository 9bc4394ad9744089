"""A holder presumed dead may still run (cut off from the database, not from S3): its late
segment must never change the bytes of the session's new holder (storage/segments.py)."""

from __future__ import annotations

import hashlib
import os

import obstore

from moorage.oci.digest import Digest
from moorage.storage.s3 import S3BlobStore
from moorage.storage.segments import (
    Piece,
    PieceRef,
    Segment,
    decode_location,
    encode_location,
    parse_segment,
    segment_name,
)
from tests.support_s3 import MotoServer

UPLOAD = "d" * 32


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def keys(store: S3BlobStore) -> list[str]:
    listing = obstore.list(store.s3, store.root or None).collect()
    return sorted(meta["path"][len(store.root) :] for meta in listing)


def test_a_displaced_holders_late_segment_changes_nothing(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    first, late, second = os.urandom(1000), os.urandom(700), os.urandom(500)
    # Claim c1 appended and was recorded.
    writer = store.open_upload(UPLOAD, 0, "c1", ())
    writer.write(first)
    writer.close()
    recorded: tuple[str, ...] = ("c1",)
    # Claim c2 appends from the recorded offset, then its node is cut off from the database
    # and presumed dead; it still streams to S3.
    displaced = store.open_upload(UPLOAD, len(first), "c2", recorded)
    displaced.write(late)
    # Claim c3 (another node) took the session over and appends from the same offset.
    taken_over = store.open_upload(UPLOAD, len(first), "c3", recorded)
    taken_over.write(second)
    taken_over.close()
    recorded = ("c1", "c3")
    # The displaced holder's segment completes after that (with offset names alone, it had
    # the same key as the new holder's and replaced it).
    displaced.close()
    size = len(first) + len(second)
    assert store.upload_size(UPLOAD, recorded) == size
    assert b"".join(store.read_upload(UPLOAD, size, recorded)) == first + second

    # Another displaced writer finishes after the blob was published in place.
    again = store.open_upload(UPLOAD, size, "c4", recorded)
    again.write(b"late again" * 100)
    digest = digest_of(first + second)
    location = store.commit_upload(UPLOAD, digest, size, recorded)
    again.close()
    assert location is not None
    assert b"".join(store.read(digest, location=location)) == first + second
    assert store.stat(digest, location) == size
    # The stray objects are the upload's: they go with it when the blob is collected.
    assert f"uploads/{UPLOAD}/{segment_name(size, 'c4')}" in keys(store)
    store.delete(digest, location)
    assert keys(store) == []


def test_a_displaced_holder_never_deletes_the_new_holders_segments(moto: MotoServer) -> None:
    """Opening an append deletes only what must go (segments named by their offset alone);
    a holder that does not know of the takeover would otherwise delete its successor's
    bytes as "not recorded"."""
    store = S3BlobStore.from_settings(moto.settings())
    writer = store.open_upload(UPLOAD, 0, "c1", ())
    writer.write(b"a" * 10)
    writer.close()
    successor = store.open_upload(UPLOAD, 10, "c3", ("c1",))
    successor.write(b"b" * 10)
    successor.close()
    # The displaced holder (claim c2) gets its first byte only now, knowing only of c1.
    store.open_upload(UPLOAD, 10, "c2", ("c1",)).discard()
    assert b"".join(store.read_upload(UPLOAD, 20, ("c1", "c3"))) == b"a" * 10 + b"b" * 10
    # An unrecorded segment is ignored, and goes with the upload.
    stale = store.open_upload(UPLOAD, 20, "c4", ("c1", "c3"))
    stale.write(b"never recorded")
    stale.close()
    assert store.upload_size(UPLOAD, ("c1", "c3")) == 20
    store.abort_upload(UPLOAD)
    assert keys(store) == []


def test_sessions_begun_before_claims_were_recorded_read_as_before(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    old = store.open_upload(UPLOAD, 0)  # a segment named by its offset alone
    old.write(b"old bytes ")
    old.close()
    new = store.open_upload(UPLOAD, 10, "c1", None)
    new.write(b"new bytes")
    new.close()
    data = b"old bytes new bytes"
    assert b"".join(store.read_upload(UPLOAD, len(data), ("c1",))) == data
    location = store.commit_upload(UPLOAD, digest_of(data), len(data), ("c1",))
    assert location is not None
    assert b"".join(store.read(digest_of(data), location=location)) == data


def test_segment_names_and_locations_carry_the_claim() -> None:
    assert parse_segment(segment_name(42, "9c1e")) == (42, "9c1e")
    assert parse_segment(segment_name(42)) == (42, None)
    assert parse_segment(segment_name(42) + ".NOT-HEX") is None
    pieces = [Piece(Segment("k", 0, 5, "ab12"), 5), Piece(Segment("k", 5, 3), 3)]
    location = encode_location(UPLOAD, pieces)
    assert location == f"{UPLOAD}/0.ab12+5/5+3"
    decoded = decode_location(location)
    assert decoded is not None
    assert [ref.name for ref in decoded[1]] == [segment_name(0, "ab12"), segment_name(5)]
    # Locations recorded before claims still decode to the same keys.
    assert decode_location(f"{UPLOAD}/0+5") == (UPLOAD, [PieceRef(0, 5)])
