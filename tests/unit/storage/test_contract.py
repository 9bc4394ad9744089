"""The BlobStore contract, proven against every backend: the filesystem and S3 (moto)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from moorage.oci.digest import Digest
from moorage.storage.filesystem import FilesystemBlobStore
from moorage.storage.port import BlobNotFound, BlobStore, UploadTruncated
from moorage.storage.s3 import S3BlobStore
from tests.support_s3 import MotoServer

# A factory returns another store over the same place: a second worker process.
StoreFactory = Callable[[], BlobStore]


@pytest.fixture(params=["filesystem", "s3"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "filesystem":
        return lambda: FilesystemBlobStore(tmp_path)
    moto: MotoServer = request.getfixturevalue("moto")
    settings = moto.settings()
    return lambda: S3BlobStore.from_settings(settings)


@pytest.fixture
def store(stores: StoreFactory) -> BlobStore:
    return stores()


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def append(store: BlobStore, upload_id: str, offset: int, *chunks: bytes) -> None:
    writer = store.open_upload(upload_id, offset)
    for chunk in chunks:
        writer.write(chunk)
    writer.close()


@dataclass(frozen=True)
class Stored:
    """A published blob as the caller keeps it: its digest and the location commit gave."""

    digest: Digest
    location: str | None


def commit(store: BlobStore, upload_id: str, data: bytes) -> Stored:
    digest = digest_of(data)
    return Stored(digest, store.commit_upload(upload_id, digest, len(data)))


def publish(store: BlobStore, data: bytes, upload_id: str = "a" * 32) -> Stored:
    append(store, upload_id, 0, data)
    return commit(store, upload_id, data)


def read_all(store: BlobStore, blob: Stored, first: int = 0, last: int | None = None) -> bytes:
    return b"".join(store.read(blob.digest, first, last, blob.location))


def stat(store: BlobStore, blob: Stored) -> int | None:
    return store.stat(blob.digest, blob.location)


def listed(store: BlobStore) -> list[Stored]:
    return [Stored(digest, location) for digest, location in store.iter_blobs()]


def test_a_blob_is_visible_only_after_commit(store: BlobStore) -> None:
    data = b"layer bytes" * 1000
    digest = digest_of(data)
    append(store, "1f" * 16, 0, data)
    assert store.stat(digest) is None
    assert listed(store) == []
    blob = commit(store, "1f" * 16, data)
    assert stat(store, blob) == len(data)
    assert read_all(store, blob) == data
    assert listed(store) == [blob]
    assert store.upload_size("1f" * 16) is None  # the upload is gone once published


def test_a_published_upload_is_never_swept(store: BlobStore) -> None:
    blob = publish(store, b"kept for good")
    assert list(store.stale_uploads(time.time() + 60)) == []
    assert read_all(store, blob) == b"kept for good"


def test_committing_again_after_success_finds_the_same_blob(store: BlobStore) -> None:
    """A PUT retried after a crash between publishing and recording it."""
    blob = publish(store, b"published once")
    try:
        again = commit(store, "a" * 32, b"published once")
    except BlobNotFound:  # moved into place: the caller looks the blob up instead
        again = Stored(blob.digest, None)
    assert again == blob
    assert stat(store, again) == len(b"published once")


def test_publishing_the_same_blob_twice_is_harmless(store: BlobStore) -> None:
    data = b"same content"
    first = publish(store, data, "a" * 32)
    second = publish(store, data, "b" * 32)
    assert read_all(store, first) == data
    assert read_all(store, second) == data


def test_an_empty_blob_can_be_published(store: BlobStore) -> None:
    blob = publish(store, b"")
    assert stat(store, blob) == 0
    assert read_all(store, blob) == b""


def test_a_local_blob_is_named_below_the_blobs_directory_by_its_digest(store: BlobStore) -> None:
    """What X-Accel-Redirect hands to nginx: the file's path below ``blobs/``, or nothing."""
    data = b"served by the front proxy"
    blob = publish(store, data)
    local = store.local_path(blob.digest, blob.location)
    relative = store.relative_path(blob.digest, blob.location)
    if local is None:
        assert relative is None
        return
    encoded = blob.digest.encoded
    assert relative == f"sha256/{encoded[:2]}/{encoded}"
    assert local.as_posix().endswith(f"/blobs/{relative}")
    assert local.read_bytes() == data


def test_a_local_blob_opens_for_the_http_server_and_stays_readable_once_deleted(
    store: BlobStore,
) -> None:
    data = b"read by the HTTP server itself"
    blob = publish(store, data)
    fd = store.open_local(blob.digest, blob.location)
    if fd is None:  # not a local file (S3): the server reads through store.read
        assert store.local_path(blob.digest, blob.location) is None
        return
    try:
        store.delete(blob.digest, blob.location)
        assert os.pread(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)
    with pytest.raises(BlobNotFound):
        store.open_local(blob.digest, blob.location)


def test_deleting_a_missing_blob_is_not_an_error(store: BlobStore) -> None:
    store.delete(digest_of(b"never stored"))
    blob = publish(store, b"gone soon")
    store.delete(blob.digest, blob.location)
    store.delete(blob.digest, blob.location)
    assert stat(store, blob) is None
    assert listed(store) == []
    with pytest.raises(BlobNotFound):
        store.read(blob.digest, location=blob.location)


def test_ranged_reads_return_exactly_the_requested_bytes(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    blob = publish(store, data)
    assert read_all(store, blob, 0, 0) == data[:1]
    assert read_all(store, blob, 100, 199) == data[100:200]
    assert read_all(store, blob, len(data) - 5) == data[-5:]
    assert read_all(store, blob, 1024 * 1024 - 1, 2 * 1024 * 1024) == data[1048575:2097153]


def test_reading_a_missing_blob_fails_before_any_bytes(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.read(digest_of(b"absent"))


def test_appends_from_two_workers_continue_one_upload(stores: StoreFactory) -> None:
    first_worker, second_worker = stores(), stores()
    upload_id = "c" * 32
    append(first_worker, upload_id, 0, b"hello ", b"there ")
    assert second_worker.upload_size(upload_id) == 12
    append(second_worker, upload_id, 12, b"general ")
    append(first_worker, upload_id, 20, b"kenobi")
    data = b"hello there general kenobi"
    assert first_worker.upload_size(upload_id) == len(data)
    assert b"".join(second_worker.read_upload(upload_id, len(data))) == data
    blob = commit(second_worker, upload_id, data)
    assert read_all(first_worker, blob) == data
    assert read_all(first_worker, blob, 3, 14) == data[3:15]  # across appends


def test_an_interrupted_append_is_dropped_by_the_next_one(store: BlobStore) -> None:
    upload_id = "d" * 32
    append(store, upload_id, 0, b"kept ")
    # An append whose bytes landed but whose offset was never recorded (a crash):
    append(store, upload_id, 5, b"orphaned bytes")
    append(store, upload_id, 5, b"instead")
    assert store.upload_size(upload_id) == 12
    assert b"".join(store.read_upload(upload_id, 12)) == b"kept instead"
    blob = commit(store, upload_id, b"kept instead")
    assert read_all(store, blob) == b"kept instead"
    assert read_all(store, blob, 4, 8) == b" inst"


def test_a_discarded_append_leaves_the_upload_where_it_was(store: BlobStore) -> None:
    upload_id = "e" * 32
    append(store, upload_id, 0, b"first ")
    writer = store.open_upload(upload_id, 6)
    writer.write(b"never mind")
    writer.discard()
    assert store.upload_size(upload_id) == 6
    append(store, upload_id, 6, b"second")
    assert b"".join(store.read_upload(upload_id, 12)) == b"first second"


def test_continuing_past_the_bytes_held_is_refused(store: BlobStore) -> None:
    append(store, "f" * 32, 0, b"short")
    with pytest.raises(UploadTruncated):
        store.open_upload("f" * 32, 50)
    with pytest.raises(BlobNotFound):
        store.open_upload("0" * 32, 5)


def test_committing_more_bytes_than_held_is_refused_and_publishes_nothing(
    store: BlobStore,
) -> None:
    append(store, "b" * 32, 0, b"short")
    digest = digest_of(b"short\0\0\0")
    with pytest.raises(UploadTruncated):
        store.commit_upload("b" * 32, digest, 8)
    assert store.stat(digest) is None
    with pytest.raises(BlobNotFound):
        store.commit_upload("9" * 32, digest, 8)


def test_commit_publishes_only_the_first_size_bytes(store: BlobStore) -> None:
    append(store, "a" * 32, 0, b"wanted", b"-and-a-crash-tail")
    blob = commit(store, "a" * 32, b"wanted")
    assert read_all(store, blob) == b"wanted"
    assert stat(store, blob) == 6


def test_abort_removes_the_upload_and_is_idempotent(store: BlobStore) -> None:
    append(store, "a" * 32, 0, b"abc")
    append(store, "a" * 32, 3, b"def")
    store.abort_upload("a" * 32)
    store.abort_upload("a" * 32)
    assert store.upload_size("a" * 32) is None
    with pytest.raises(BlobNotFound):
        store.commit_upload("a" * 32, digest_of(b"abcdef"), 6)


def test_stale_uploads_lists_only_uploads_idle_since_the_cutoff(store: BlobStore) -> None:
    append(store, "1" * 32, 0, b"old")
    time.sleep(1.1)  # S3 timestamps have a resolution of one second
    cutoff = time.time()
    time.sleep(1.1)
    append(store, "2" * 32, 0, b"fresh")
    stale = set(store.stale_uploads(cutoff))
    assert "1" * 32 in stale
    assert "2" * 32 not in stale


def test_check_and_probe_pass_on_a_working_store(store: BlobStore) -> None:
    store.check()
    store.probe()
    assert listed(store) == []  # the probe left nothing behind
    assert list(store.stale_uploads(time.time() + 60)) == []


def test_a_first_append_stored_whole_continues_and_publishes_as_any(store: BlobStore) -> None:
    # Claims are hex, as the service makes them (uuid4).
    assert store.create_upload("f" * 32, "f1", b"head ")
    append_as(store, "f" * 32, 5, "f2", ("f1",), b"tail")
    digest = digest_of(b"head tail")
    location = store.commit_upload("f" * 32, digest, 9, ("f1", "f2"))
    assert read_all(store, Stored(digest, location)) == b"head tail"


def test_a_first_append_never_lands_under_a_writer_of_the_same_upload(store: BlobStore) -> None:
    writer = store.open_upload("9" * 32, 0, "a0", ())
    writer.write(b"the holder's")
    # Refused where appends share one file; kept apart (and never counted) where they do not.
    store.create_upload("9" * 32, "b0", b"a late first")
    writer.close()
    digest = digest_of(b"the holder's")
    location = store.commit_upload("9" * 32, digest, 12, ("a0",))
    assert read_all(store, Stored(digest, location)) == b"the holder's"


def test_a_second_name_of_an_upload_keeps_its_bytes_while_the_upload_goes_on(
    stores: StoreFactory, tmp_path: Path
) -> None:
    store = stores()
    assert store.create_upload("5" * 32, "c1", b"first ")
    name = store.link_upload("5" * 32)
    if store.separate_appends:  # S3: no second names (the service keeps such sessions' rows)
        assert name is None
        return
    assert name is not None and store.link_upload("6" * 32) is None  # no bytes, no name
    append(store, "5" * 32, 6, b"and more")
    assert b"".join(store.read_upload(name, 100)) == b"first "
    assert b"".join(store.read_upload("5" * 32, 100)) == b"first and more"
    published = commit(store, name, b"first ")  # published under it, without a copy
    assert read_all(store, published) == b"first "
    assert b"".join(store.read_upload("5" * 32, 100)) == b"first and more"


def append_as(
    store: BlobStore,
    upload_id: str,
    offset: int,
    claim: str,
    appends: tuple[str, ...],
    data: bytes,
) -> None:
    writer = store.open_upload(upload_id, offset, claim, appends)
    writer.write(data)
    writer.close()
