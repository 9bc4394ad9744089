"""What only the S3 backend does: redirects, bounded memory, failures named plainly."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import obstore
import pytest

from moorage.oci.digest import Digest
from moorage.storage import s3
from moorage.storage.port import BlobNotFound, StorageThrottled, StorageUnavailable
from moorage.storage.s3 import S3BlobStore
from moorage.storage.s3_writer import PART_CONCURRENCY, QUEUE_DEPTH
from tests.support_s3 import FaultyProxy, MotoServer, free_port

Stored = tuple[Digest, str | None]


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def append(store: S3BlobStore, upload_id: str, offset: int, data: bytes) -> None:
    writer = store.open_upload(upload_id, offset)
    writer.write(data)
    writer.close()


def publish(store: S3BlobStore, *appends: bytes, upload_id: str = "a" * 32) -> Stored:
    """Publish an upload made of ``appends`` (one PATCH each)."""
    offset = 0
    for data in appends:
        append(store, upload_id, offset, data)
        offset += len(data)
    digest = digest_of(b"".join(appends))
    return digest, store.commit_upload(upload_id, digest, offset)


def keys(store: S3BlobStore) -> list[str]:
    """The store's keys, relative to its prefix."""
    listing = obstore.list(store.s3, store.root or None).collect()
    return [meta["path"][len(store.root) :] for meta in listing]


def test_with_redirect_on_clients_fetch_the_blob_from_s3(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings(redirect=True, redirect_expiry_seconds=42))
    data = os.urandom(10_000)
    url = store.redirect_url(*publish(store, data))
    assert url is not None and url.startswith(moto.endpoint)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["42"]  # moto does not enforce it
    assert httpx.get(url).content == data
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]


def test_with_redirect_off_bytes_stream_through_us(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings(redirect=False))
    blob = publish(store, b"streamed")
    assert store.redirect_url(*blob) is None
    assert store.local_path(*blob) is None


def test_an_upload_is_published_where_it_was_written_without_a_copy(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    digest, location = publish(store, b"one ", b"two ", b"three")
    assert location == f"{'a' * 32}/0+4/4+4/8+5"
    upload = f"uploads/{'a' * 32}"
    # Nothing under blobs/: the three appends' objects are the blob, plus the marker that
    # keeps the sweeper away and names the blob for full sweeps.
    assert sorted(keys(store)) == [
        f"{upload}/00000000000000000000",
        f"{upload}/00000000000000000004",
        f"{upload}/00000000000000000008",
        f"{upload}/published",
    ]
    assert list(store.iter_blobs()) == [(digest, location)]
    assert b"".join(store.read(digest, 2, 9, location)) == b"e two th"
    store.delete(digest, location)
    assert keys(store) == []


def test_a_monolithic_push_lives_under_the_prefix_at_its_digest(moto: MotoServer) -> None:
    prefix = f"registry-{uuid.uuid4().hex}"
    store = S3BlobStore.from_settings(moto.settings(prefix=f"/{prefix}/"))
    digest = digest_of(b"prefixed")
    writer = store.open_blob(digest)
    writer.write(b"prefixed")
    writer.close()
    key = f"blobs/sha256/{digest.encoded[:2]}/{digest.encoded}"
    assert bytes(obstore.get(store.s3, f"{prefix}/{key}").bytes()) == b"prefixed"
    assert keys(store) == [key]
    assert list(store.iter_blobs()) == [(digest, None)]


def test_with_redirect_on_a_blob_of_several_appends_is_one_object(moto: MotoServer) -> None:
    """A pre-signed URL names one object: several appends are concatenated at commit."""
    store = S3BlobStore.from_settings(moto.settings(redirect=True))
    digest, location = publish(store, b"chunk one, ", b"chunk two")
    assert location is None
    url = store.redirect_url(digest)
    assert url is not None and httpx.get(url).content == b"chunk one, chunk two"
    assert keys(store) == [f"blobs/sha256/{digest.encoded[:2]}/{digest.encoded}"]


def test_a_blob_kept_in_pieces_streams_once_redirects_are_turned_on(moto: MotoServer) -> None:
    settings = moto.settings()
    digest, location = publish(S3BlobStore.from_settings(settings), b"ab", b"cd")
    store = S3BlobStore.from_settings(settings.model_copy(update={"redirect": True}))
    assert store.redirect_url(digest, location) is None
    assert b"".join(store.read(digest, location=location)) == b"abcd"


def test_an_upload_of_too_many_appends_is_concatenated(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "MAX_LOCATION_PIECES", 2)
    store = S3BlobStore.from_settings(moto.settings())
    digest, location = publish(store, b"a", b"b", b"c")
    assert location is None
    assert b"".join(store.read(digest)) == b"abc"


def test_a_published_upload_whose_session_ended_unrecorded_is_removed(moto: MotoServer) -> None:
    """The crash between commit and the database: the session expires and is aborted."""
    store = S3BlobStore.from_settings(moto.settings())
    digest, location = publish(store, b"never recorded")
    store.abort_upload("a" * 32)
    assert keys(store) == []
    assert store.stat(digest, location) is None


def test_a_location_the_store_cannot_parse_is_a_missing_blob(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    digest = digest_of(b"x")
    assert store.stat(digest, "../etc/0+1") is None
    with pytest.raises(BlobNotFound):
        store.read(digest, location="not a location")


def test_a_large_upload_holds_only_part_buffers_in_memory(moto: MotoServer) -> None:
    part = 5 * 1024 * 1024
    # Redirects on, so that commit concatenates the two appends (the path that streams).
    store = S3BlobStore.from_settings(moto.settings(part_size_bytes=part, redirect=True))
    chunk = os.urandom(1024 * 1024)
    hasher = hashlib.sha256()
    size = 64 * 1024 * 1024
    tracemalloc.start()
    try:
        for index, offset in enumerate((0, size // 2)):
            writer = store.open_upload("b" * 32, offset)
            for _ in range(size // 2 // len(chunk)):
                writer.write(chunk)
                hasher.update(chunk)
            writer.close()
            assert index == 0 or store.upload_size("b" * 32) == size
        digest = Digest("sha256", hasher.hexdigest())
        assert store.commit_upload("b" * 32, digest, size) is None
        read_back = hashlib.sha256()
        for piece in store.read(digest):
            read_back.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read_back.hexdigest() == digest.encoded
    # Of 64 MiB moved up, across (commit concatenates) and down, at most the parts in flight
    # (obstore holds each written buffer until its part is sent), the hand-over queue and a
    # read chunk or two: a bound set by the part size, not by the blob's.
    bound = (PART_CONCURRENCY + 1) * part + (QUEUE_DEPTH + 3) * len(chunk)
    assert peak <= bound < size / 2


def test_probe_names_a_missing_bucket(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings(bucket="no-such-bucket"))
    with pytest.raises(StorageUnavailable, match="no such bucket: 'no-such-bucket'"):
        store.probe()
    with pytest.raises(StorageUnavailable, match="no such bucket"):
        store.check()


def test_probe_names_an_unreachable_endpoint(moto: MotoServer) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3BlobStore.from_settings(moto.settings(endpoint_url=endpoint))
    with pytest.raises(StorageUnavailable, match=f"endpoint unreachable: {endpoint}"):
        store.probe()


def test_credentials_never_appear_in_failures(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings(bucket="no-such-bucket"))
    with pytest.raises(StorageUnavailable) as caught:
        store.probe()
    assert "moorage-test-secret" not in str(caught.value)
    assert "moorage-test-secret" not in repr(store.__dict__)


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(moto.endpoint)
    yield faulty
    faulty.close()


def test_throttling_mid_upload_is_retryable_and_leaves_nothing_visible(
    moto: MotoServer, proxy: FaultyProxy
) -> None:
    store = S3BlobStore.from_settings(moto.settings(endpoint_url=proxy.endpoint))
    first, second = os.urandom(1000), os.urandom(6 * 1024 * 1024)
    digest = digest_of(first + second)
    writer = store.open_upload("c" * 32, 0)
    writer.write(first)
    writer.close()
    writer = store.open_upload("c" * 32, len(first))
    proxy.fail_with = (503, "SlowDown")
    with pytest.raises(StorageThrottled):
        writer.write(second)
        writer.close()
    proxy.fail_with = None
    assert store.stat(digest) is None
    assert store.upload_size("c" * 32) == len(first)
    # The client retries the chunk from the recorded offset, and it goes through.
    writer = store.open_upload("c" * 32, len(first))
    writer.write(second)
    writer.close()
    location = store.commit_upload("c" * 32, digest, len(first) + len(second))
    assert b"".join(store.read(digest, location=location)) == first + second


def test_a_failing_store_is_unavailable_not_throttled(moto: MotoServer, proxy: FaultyProxy) -> None:
    store = S3BlobStore.from_settings(moto.settings(endpoint_url=proxy.endpoint))
    proxy.fail_with = (500, "InternalError")
    with pytest.raises(StorageUnavailable, match="failed with HTTP 500") as caught:
        store.stat(digest_of(b"x"))
    assert not isinstance(caught.value, StorageThrottled)


def test_a_direct_blob_write_is_visible_only_when_closed(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    data = os.urandom(6 * 1024 * 1024)  # more than one part
    digest = digest_of(data)
    writer = store.open_blob(digest)
    writer.write(data[:3_000_000])
    writer.write(data[3_000_000:])
    assert store.stat(digest) is None  # the caller has not verified it yet
    writer.close()
    assert store.stat(digest) == len(data)
    assert b"".join(store.read(digest)) == data


def test_a_discarded_direct_blob_write_leaves_nothing(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    data = os.urandom(6 * 1024 * 1024)
    digest = digest_of(data)
    writer = store.open_blob(digest)
    writer.write(data)
    writer.discard()
    assert store.stat(digest) is None
    assert list(store.iter_blobs()) == []


def test_a_published_upload_can_no_longer_be_written_to(moto: MotoServer) -> None:
    store = S3BlobStore.from_settings(moto.settings())
    digest, location = publish(store, b"final bytes")
    assert store.upload_size("a" * 32) is None
    for offset in (0, 11):
        with pytest.raises(BlobNotFound):
            store.open_upload("a" * 32, offset)
    assert b"".join(store.read(digest, location=location)) == b"final bytes"
