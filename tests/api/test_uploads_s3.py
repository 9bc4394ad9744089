"""Upload tests that look at the S3 backend's own objects: a session upload is published where
it was written (no copy), a blob pushed again is not stored twice, and the sweeper leaves
published uploads alone."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import obstore
import pytest

from moorage.config import S3Settings
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.uploads import UploadService
from moorage.storage.port import StorageUnavailable
from moorage.storage.s3 import S3BlobStore
from tests.api.support import digest_of, served_by_object_store
from tests.api.test_uploads_api import patch, start
from tests.support_s3 import MotoServer

DATA = os.urandom(3 * 1024 * 1024 + 5)
ONE_MIB = 1024 * 1024


@pytest.fixture(params=["s3", "s3-redirect"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def push_in_chunks(client: httpx.AsyncClient, repo: str, data: bytes, size: int) -> str:
    location = await start(client, repo)
    for first in range(0, len(data), size):
        response = await patch(client, location, first, data[first : first + size])
        assert response.status_code == 202, response.text
        location = response.headers["location"]
    digest = digest_of(data)
    assert (await client.put(f"{location}?digest={digest}")).status_code == 201
    return digest


def object_keys(store: S3BlobStore) -> list[str]:
    listing = obstore.list(store.s3, store.root or None).collect()
    return sorted(meta["path"][len(store.root) :] for meta in listing)


@pytest.fixture
def bucket(storage: dict[str, Any]) -> S3BlobStore:
    """The store the app under test writes to."""
    return S3BlobStore.from_settings(S3Settings(**storage["s3"]))


async def test_a_blob_pushed_in_one_patch_is_served_from_where_it_was_written(
    client: httpx.AsyncClient, bucket: S3BlobStore, moto: MotoServer, backend: str
) -> None:
    digest = await push_in_chunks(client, "s3/one", DATA, len(DATA))
    keys = object_keys(bucket)
    assert not any(key.startswith("blobs/") for key in keys)  # no copy to the digest's key
    response = await client.get(f"/v2/s3/one/blobs/{digest}")
    assert response.status_code == 200 and response.content == DATA
    assert served_by_object_store(response, moto.endpoint) == (backend == "s3-redirect")
    ranged = await client.get(f"/v2/s3/one/blobs/{digest}", headers={"Range": "bytes=7-1000"})
    assert ranged.status_code == 206 and ranged.content == DATA[7:1001]


async def test_a_blob_pushed_in_chunks_reads_back_whole_and_in_ranges(
    client: httpx.AsyncClient, bucket: S3BlobStore, moto: MotoServer, backend: str
) -> None:
    digest = await push_in_chunks(client, "s3/chunks", DATA, ONE_MIB)
    # With redirects on, the chunks are joined into one object a pre-signed URL can name.
    concatenated = any(key.startswith("blobs/") for key in object_keys(bucket))
    assert concatenated == (backend == "s3-redirect")
    response = await client.get(f"/v2/s3/chunks/blobs/{digest}")
    assert response.status_code == 200 and response.content == DATA
    across = {"Range": f"bytes={ONE_MIB - 3}-{2 * ONE_MIB + 2}"}
    ranged = await client.get(f"/v2/s3/chunks/blobs/{digest}", headers=across)
    assert ranged.status_code == 206
    assert ranged.content == DATA[ONE_MIB - 3 : 2 * ONE_MIB + 3]
    assert served_by_object_store(response, moto.endpoint) == (backend == "s3-redirect")
    head = await client.head(f"/v2/s3/chunks/blobs/{digest}")
    assert head.headers["content-length"] == str(len(DATA))


async def test_a_blob_pushed_again_is_stored_once(
    client: httpx.AsyncClient, bucket: S3BlobStore
) -> None:
    digest = await push_in_chunks(client, "s3/first", DATA, len(DATA))
    before = object_keys(bucket)
    assert await push_in_chunks(client, "s3/second", DATA, len(DATA)) == digest
    assert object_keys(bucket) == before  # the second upload's bytes were dropped
    for repo in ("s3/first", "s3/second"):
        response = await client.get(f"/v2/{repo}/blobs/{digest}")
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == digest.split(":")[1]


async def test_the_sweeper_leaves_published_uploads_alone(
    client: httpx.AsyncClient, bucket: S3BlobStore, storage: dict[str, Any]
) -> None:
    digest = await push_in_chunks(client, "s3/swept", DATA, ONE_MIB)
    abandoned = await start(client, "s3/swept")
    await patch(client, abandoned, 0, b"never finished")
    data_dir = storage["data_dir"]
    metadata = SqlMetadataStore(make_engine(f"sqlite:///{data_dir / 'moorage.db'}"))
    # Everything is a day old to this service: the abandoned session goes, the blob stays.
    UploadService(metadata, bucket, expiry_seconds=0.0).expire()
    leftover = [key for key in object_keys(bucket) if abandoned.rsplit("/", 1)[1] in key]
    assert leftover == []
    response = await client.get(f"/v2/s3/swept/blobs/{digest}")
    assert response.status_code == 200 and response.content == DATA


async def upload_patched(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    """An upload session holding ``data`` in one PATCH, not yet completed: its PUT URL."""
    location = await start(client, repo)
    response = await patch(client, location, 0, data)
    assert response.status_code == 202
    return f"{response.headers['location']}?digest={digest_of(data)}".replace("??", "?")


def upload_ids(bucket: S3BlobStore) -> set[str]:
    return {key.split("/")[1] for key in object_keys(bucket) if key.startswith("uploads/")}


async def test_two_uploads_of_one_blob_finishing_together_keep_one_copy(
    client: httpx.AsyncClient, bucket: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await upload_patched(client, "s3/race", DATA)
    second = await upload_patched(client, "s3/race", DATA)
    assert (await client.put(first)).status_code == 201
    kept = {first.split("?")[0].rsplit("/", 1)[1]}
    # The second PUT looked for the blob before the first one recorded it:
    monkeypatch.setattr(UploadService, "stored", lambda self, digest: (None, None))
    assert (await client.put(second)).status_code == 201
    monkeypatch.undo()
    assert upload_ids(bucket) == kept  # the second copy was dropped, not leaked
    response = await client.get(f"/v2/s3/race/blobs/{digest_of(DATA)}")
    assert response.status_code == 200 and response.content == DATA


async def test_a_blob_whose_recorded_bytes_were_lost_is_replaced_by_a_new_push(
    client: httpx.AsyncClient, bucket: S3BlobStore
) -> None:
    digest = await push_in_chunks(client, "s3/lost", DATA, len(DATA))
    for upload in upload_ids(bucket):  # the bucket lost them (someone deleted the objects)
        bucket.abort_upload(upload)
    assert (await client.get(f"/v2/s3/lost/blobs/{digest}")).status_code == 404
    assert await push_in_chunks(client, "s3/lost", DATA, len(DATA)) == digest
    response = await client.get(f"/v2/s3/lost/blobs/{digest}")
    assert response.status_code == 200 and response.content == DATA


async def test_a_store_failing_while_settling_a_race_does_not_fail_the_push(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object) -> None:
        raise StorageUnavailable("s3 is having a moment")

    monkeypatch.setattr(UploadService, "_settle", failing)
    digest = await push_in_chunks(client, "s3/settle", DATA, len(DATA))
    response = await client.get(f"/v2/s3/settle/blobs/{digest}")
    assert response.status_code == 200 and response.content == DATA
