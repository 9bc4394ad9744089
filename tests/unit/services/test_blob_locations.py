"""Where a blob's bytes are (``blobs.location``), as the metadata store keeps it on SQLite and
on PostgreSQL: set by the upload that published the blob, kept by links from elsewhere, and
replaced when the bytes are written again at the digest's own place."""

from __future__ import annotations

from moorage.metadata.records import BlobRecord, UploadSession
from moorage.metadata.sql import SqlMetadataStore

DIGEST = "sha256:" + "ab" * 32
IN_PLACE = "0123456789abcdef0123456789abcdef/0+3/3+4"


def completed(
    store: SqlMetadataStore, repository: str, location: str | None, upload_id: str = "f" * 32
) -> None:
    """Run an upload session of ``repository`` to completion, publishing at ``location``."""
    session = UploadSession(upload_id, repository, "sha256", 0, b"", 0.0, 0.0)
    store.create_upload(session)
    token = 100.0
    assert store.claim_upload(repository, session.id, 1.0, token, "holder") is not None
    assert store.complete_upload(session.id, token, repository, DIGEST, 7, location)


def test_the_location_an_upload_published_at_is_kept_and_served(store: SqlMetadataStore) -> None:
    completed(store, "team/app", IN_PLACE)
    assert store.blob(DIGEST) == BlobRecord(7, IN_PLACE)
    assert store.linked_blob("team/app", DIGEST) == BlobRecord(7, IN_PLACE)
    assert store.linked_blob("team/other", DIGEST) is None


def test_a_link_from_another_repository_keeps_the_location(store: SqlMetadataStore) -> None:
    completed(store, "team/app", IN_PLACE)
    store.link_blob("team/other", DIGEST, 7)  # a mount, or a push of a blob already stored
    assert store.linked_blob("team/other", DIGEST) == BlobRecord(7, IN_PLACE)


def test_bytes_written_again_at_the_digests_place_replace_the_location(
    store: SqlMetadataStore,
) -> None:
    completed(store, "team/app", IN_PLACE)
    store.store_blob("team/other", DIGEST, 7, None)  # a monolithic push after the bytes were lost
    assert store.blob(DIGEST) == BlobRecord(7, None)
    assert store.linked_blob("team/app", DIGEST) == BlobRecord(7, None)


def test_a_second_upload_never_displaces_a_recorded_location(store: SqlMetadataStore) -> None:
    """Someone may be reading the recorded one; the service settles who keeps what."""
    completed(store, "team/app", IN_PLACE)
    completed(store, "team/app", "fedcba9876543210fedcba9876543210/0+7", upload_id="e" * 32)
    assert store.blob(DIGEST) == BlobRecord(7, IN_PLACE)
