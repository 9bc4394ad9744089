"""Upload sessions that live in their signed id until bytes come: what a client sees of them
(status, PATCH, PUT, cancel, expiry) and what they cost the database (nothing until then)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.records import BlobRecord
from moorage.metadata.sql import SqlMetadataStore
from moorage.oci.digest import Digest
from moorage.services.upload_ids import UploadIds
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from tests.unit.manual_clock import ManualClock as Clock

DATA = os.urandom(5000)
REPO = "ids/repo"
EXPIRY = 3600.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def blobs(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "data")


@pytest.fixture
def uploads(store: SqlMetadataStore, blobs: FilesystemBlobStore, clock: Clock) -> UploadService:
    return UploadService(store, blobs, EXPIRY, clock=clock, ids=UploadIds(b"k" * 32))


def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def code_of(call: Callable[[], object]) -> ErrorCode:
    with pytest.raises(RegistryError) as info:
        call()
    return info.value.code


def test_opening_a_session_stores_nothing_yet_it_answers_status(
    uploads: UploadService, store: SqlMetadataStore
) -> None:
    session = uploads.start(REPO)
    assert store.get_upload(REPO, session.id) is None
    assert store.inventory().upload_sessions == 0
    assert uploads.status(REPO, session.id).offset == 0


def test_a_put_with_the_whole_blob_links_it_and_ends_the_session(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    assert uploads.put_fresh(REPO, session.id, digest(DATA), DATA)
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))
    assert blobs.stat(digest(DATA)) == len(DATA)
    # The id is still validly signed, but the session is over: every request on it is refused.
    assert code_of(lambda: uploads.status(REPO, session.id)) is ErrorCode.BLOB_UPLOAD_UNKNOWN
    assert code_of(lambda: uploads.begin_append(REPO, session.id, None)) is (
        ErrorCode.BLOB_UPLOAD_UNKNOWN
    )
    assert not uploads.put_fresh(REPO, session.id, digest(DATA), DATA)
    assert store.inventory().upload_sessions == 0


def test_a_wrong_digest_on_a_fresh_session_stores_nothing_and_ends_it(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    wrong = digest(b"something else")
    assert code_of(lambda: uploads.put_fresh(REPO, session.id, wrong, DATA)) is (
        ErrorCode.DIGEST_INVALID
    )
    assert blobs.stat(wrong) is None and blobs.stat(digest(DATA)) is None
    assert code_of(lambda: uploads.status(REPO, session.id)) is ErrorCode.BLOB_UPLOAD_UNKNOWN


def test_the_first_patch_creates_the_row_and_the_session_goes_on_as_before(
    uploads: UploadService, store: SqlMetadataStore
) -> None:
    session = uploads.start(REPO)
    first = uploads.begin_append(REPO, session.id, None)
    # While the first PATCH holds it, the session has its row and is busy to others.
    assert code_of(lambda: uploads.begin_append(REPO, session.id, None)) is (
        ErrorCode.TOOMANYREQUESTS
    )
    first.write(DATA[:1000])
    assert first.finish().offset == 1000
    assert uploads.status(REPO, session.id).offset == 1000
    # A PUT with a body now continues the session's bytes (not a fresh, whole blob).
    assert uploads.begin_fresh(REPO, session.id, digest(DATA)) is None
    rest = uploads.begin_append(REPO, session.id, None)
    rest.write(DATA[1000:])
    rest.complete(digest(DATA))
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))
    assert code_of(lambda: uploads.begin_append(REPO, session.id, None)) is (
        ErrorCode.BLOB_UPLOAD_UNKNOWN
    )


@pytest.mark.parametrize("patched", [False, True], ids=["fresh", "with-bytes"])
def test_a_cancelled_session_stays_unknown(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore, patched: bool
) -> None:
    session = uploads.start(REPO)
    if patched:
        append = uploads.begin_append(REPO, session.id, None)
        append.write(DATA[:10])
        append.finish()
    uploads.cancel(REPO, session.id)
    assert blobs.upload_size(session.id) is None
    assert code_of(lambda: uploads.status(REPO, session.id)) is ErrorCode.BLOB_UPLOAD_UNKNOWN
    assert not uploads.put_fresh(REPO, session.id, digest(DATA), DATA)
    assert code_of(lambda: uploads.cancel(REPO, session.id)) is ErrorCode.BLOB_UPLOAD_UNKNOWN


def test_an_id_is_refused_once_the_upload_expiry_has_passed(
    uploads: UploadService, store: SqlMetadataStore, clock: Clock
) -> None:
    idle = uploads.start(REPO)
    ended = uploads.start(REPO)
    assert uploads.put_fresh(REPO, ended.id, digest(DATA), DATA)
    clock.now += EXPIRY + 1
    for upload_id in (idle.id, ended.id):
        assert code_of(lambda u=upload_id: uploads.status(REPO, u)) is (  # type: ignore[misc]
            ErrorCode.BLOB_UPLOAD_UNKNOWN
        )
        assert not uploads.put_fresh(REPO, upload_id, digest(DATA), DATA)
    # The ended session's row goes with the expiry; it counts as no abandoned session.
    assert uploads.expire() == 0
    assert store.get_upload(REPO, ended.id) is None


def test_a_forged_altered_or_foreign_id_is_unknown(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore, clock: Clock
) -> None:
    session = uploads.start(REPO)
    flipped = session.id[:-1] + ("0" if session.id[-1] != "0" else "1")
    # Another registry's key (a node not given the shared signing key): not ours.
    other = UploadService(store, blobs, EXPIRY, clock=clock, ids=UploadIds(b"x" * 32))
    for repository, upload_id in (
        (REPO, flipped),
        ("ids/other", session.id),  # an id is bound to its repository
        (REPO, "f" * 64),
        (REPO, other.start(REPO).id),
    ):
        assert code_of(lambda r=repository, u=upload_id: uploads.status(r, u)) is (  # type: ignore[misc]
            ErrorCode.BLOB_UPLOAD_UNKNOWN
        )
        assert not uploads.put_fresh(repository, upload_id, digest(DATA), DATA)
    # Any service with the same key (another worker, another node) takes the session on.
    same = UploadService(store, blobs, EXPIRY, clock=clock, ids=UploadIds(b"k" * 32))
    assert same.put_fresh(REPO, session.id, digest(DATA), DATA)


def test_the_digest_algorithm_asked_for_at_post_is_kept(uploads: UploadService) -> None:
    session = uploads.start(REPO, "sha512")
    assert uploads.status(REPO, session.id).algorithm == "sha512"
