"""Upload sessions: chunked, streamed, resumed after restart, cancelled, expired, mounted."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from tests.api.support import ClientFactory, digest_of, error_code, push_blob, registry_headers

DATA = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(200))  # 6400 bytes


@pytest.fixture(params=["filesystem", "s3", "s3-redirect"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the filesystem, on S3 (moto), and on S3 with redirects."""
    param: str = request.param
    return param


async def start(client: httpx.AsyncClient, repo: str, query: str = "") -> str:
    response = await client.post(f"/v2/{repo}/blobs/uploads/{query}")
    assert response.status_code == 202, response.text
    assert response.headers["range"] == "0-0"
    location = response.headers["location"]
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    return location


async def patch(
    client: httpx.AsyncClient, location: str, first: int, data: bytes
) -> httpx.Response:
    return await client.patch(
        location,
        content=data,
        headers={
            "Content-Range": f"{first}-{first + len(data) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )


async def test_chunked_upload_reports_progress_and_completes(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/chunked")
    for first in range(0, len(DATA), 1000):
        response = await patch(client, location, first, DATA[first : first + 1000])
        assert response.status_code == 202, response.text
        assert response.headers["range"] == f"0-{min(first + 1000, len(DATA)) - 1}"
        assert response.headers["location"] == location
    status = await client.get(location)
    assert status.status_code == 204
    assert status.headers["range"] == f"0-{len(DATA) - 1}"
    done = await client.put(f"{location}?digest={digest_of(DATA)}")
    assert done.status_code == 201
    assert done.headers["location"] == f"/v2/up/chunked/blobs/{digest_of(DATA)}"
    assert (await client.get(done.headers["location"])).content == DATA
    assert (await client.get(location)).status_code == 404


async def test_out_of_order_and_repeated_chunks_get_416(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/order")
    assert (await patch(client, location, 0, DATA[:100])).status_code == 202
    repeated = await patch(client, location, 0, DATA[:100])
    assert repeated.status_code == 416
    assert repeated.headers["range"] == "0-99"
    skipped = await patch(client, location, 200, DATA[200:300])
    assert skipped.status_code == 416
    assert error_code(skipped) == "RANGE_INVALID"
    # The refused chunks changed nothing: the upload continues from 100.
    assert (await patch(client, location, 100, DATA[100:])).status_code == 202
    assert (await client.put(f"{location}?digest={digest_of(DATA)}")).status_code == 201


@pytest.mark.parametrize(
    "header", ["garbage", "5-", "-5", "10-2", "bytes=a-b", "0-99999999999999999999"]
)
async def test_garbage_content_range_gets_416(client: httpx.AsyncClient, header: str) -> None:
    location = await start(client, "up/garbage")
    response = await client.patch(location, content=b"abc", headers={"Content-Range": header})
    assert response.status_code == 416
    assert error_code(response) == "RANGE_INVALID"


async def test_chunk_shorter_than_its_content_range_is_refused(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/short")
    response = await client.patch(location, content=b"abc", headers={"Content-Range": "0-9"})
    assert response.status_code == 400
    assert error_code(response) == "SIZE_INVALID"
    assert (await client.get(location)).headers["range"] == "0-0"


async def test_streamed_patch_without_content_range(client: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(DATA), 777):
            yield DATA[i : i + 777]

    location = await start(client, "up/stream")
    response = await client.patch(location, content=body())  # chunked transfer encoding
    assert response.status_code == 202
    assert response.headers["range"] == f"0-{len(DATA) - 1}"
    assert (await client.put(f"{location}?digest={digest_of(DATA)}")).status_code == 201


async def test_final_chunk_in_put(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/final")
    await patch(client, location, 0, DATA[:1000])
    done = await client.put(
        f"{location}?digest={digest_of(DATA)}",
        content=DATA[1000:],
        headers={"Content-Range": f"1000-{len(DATA) - 1}"},
    )
    assert done.status_code == 201
    assert (await client.get(f"/v2/up/final/blobs/{digest_of(DATA)}")).content == DATA


async def test_post_then_put_with_whole_body(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/postput")
    done = await client.put(f"{location}?digest={digest_of(DATA)}", content=DATA)
    assert done.status_code == 201


async def test_put_without_digest_is_refused(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/nodigest")
    response = await client.put(location, content=DATA)
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


async def test_zero_byte_blob(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "up/empty", b"")
    head = await client.head(f"/v2/up/empty/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == "0"
    location = await start(client, "up/empty2")
    assert (await client.put(f"{location}?digest={digest}")).status_code == 201


@pytest.mark.parametrize("query", ["?digest-algorithm=sha512", ""])
async def test_sha512_blobs(client: httpx.AsyncClient, query: str) -> None:
    digest = digest_of(DATA, "sha512")
    location = await start(client, "up/sha512", query)
    await patch(client, location, 0, DATA)
    done = await client.put(f"{location}?digest={digest}")
    assert done.status_code == 201, done.text
    got = await client.get(f"/v2/up/sha512/blobs/{digest}")
    assert got.content == DATA
    assert registry_headers(got)["docker-content-digest"] == digest


async def test_monolithic_sha512(client: httpx.AsyncClient) -> None:
    digest = digest_of(DATA, "sha512")
    response = await client.post(f"/v2/up/mono512/blobs/uploads/?digest={digest}", content=DATA)
    assert response.status_code == 201


async def test_unknown_digest_algorithm_on_post_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/up/alg/blobs/uploads/?digest-algorithm=md5")
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


# An escaped "..", "%2e%2e", is refused before routing (tests/api/test_hostile_requests.py).
@pytest.mark.parametrize("upload_id", ["0" * 32, "not-hex", "a" * 300])
async def test_unknown_upload_ids_get_404(client: httpx.AsyncClient, upload_id: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = await client.request(
            method, f"/v2/up/unknown/blobs/uploads/{upload_id}?digest={digest_of(b'')}"
        )
        assert response.status_code == 404, (method, response.text)
        assert error_code(response) == "BLOB_UPLOAD_UNKNOWN"


async def test_session_belongs_to_its_repository(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/mine")
    upload_id = location.rsplit("/", 1)[1]
    response = await client.get(f"/v2/up/theirs/blobs/uploads/{upload_id}")
    assert response.status_code == 404


async def test_cancel(client: httpx.AsyncClient) -> None:
    location = await start(client, "up/cancel")
    await patch(client, location, 0, DATA[:10])
    assert (await client.delete(location)).status_code == 204
    gone = await client.get(location)
    assert gone.status_code == 404
    assert error_code(gone) == "BLOB_UPLOAD_UNKNOWN"


async def test_session_survives_restart(make_client: ClientFactory) -> None:
    async with make_client() as first:
        location = await start(first, "up/restart")
        await patch(first, location, 0, DATA[:3000])
    async with make_client() as second:
        assert (await second.get(location)).headers["range"] == "0-2999"
        assert (await patch(second, location, 3000, DATA[3000:])).status_code == 202
        assert (await second.put(f"{location}?digest={digest_of(DATA)}")).status_code == 201


async def test_abandoned_sessions_expire(client: httpx.AsyncClient, tmp_path: Path) -> None:
    location = await start(client, "up/expire")
    await patch(client, location, 0, DATA[:100])  # a row and bytes to clean up
    data_dir = tmp_path / "data"
    metadata = SqlMetadataStore(make_engine(f"sqlite:///{data_dir / 'moorage.db'}"))
    storage = FilesystemBlobStore(data_dir)
    later = UploadService(metadata, storage, expiry_seconds=60, clock=lambda: 4e9)
    assert later.expire() == 1
    assert list((data_dir / "uploads").iterdir()) == []
    # (Its id is then refused as too old: tests/unit/services/test_upload_ids.py.)


async def test_cross_repository_mount(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "src/repo", DATA)
    mounted = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert mounted.status_code == 201
    assert mounted.headers["location"] == f"/v2/dst/repo/blobs/{digest}"
    assert (await client.get(f"/v2/dst/repo/blobs/{digest}")).content == DATA


async def test_mount_from_repository_without_blob_starts_upload(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "src/other", DATA)
    response = await client.post(f"/v2/dst/two/blobs/uploads/?mount={digest}&from=src/empty")
    assert response.status_code == 202
    assert "/blobs/uploads/" in response.headers["location"]
    assert (await client.head(f"/v2/dst/two/blobs/{digest}")).status_code == 404


async def test_two_clients_pushing_the_same_blob_both_succeed(client: httpx.AsyncClient) -> None:
    digest = digest_of(DATA)
    responses = await asyncio.gather(
        *(
            client.post(f"/v2/same/r{i}/blobs/uploads/?digest={digest}", content=DATA)
            for i in range(8)
        )
    )
    assert [r.status_code for r in responses] == [201] * 8
    for i in range(8):
        assert (await client.get(f"/v2/same/r{i}/blobs/{digest}")).content == DATA


async def test_pushing_a_stored_digest_still_requires_its_bytes(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "dedup/owner", DATA)
    forged = await client.post(f"/v2/dedup/thief/blobs/uploads/?digest={digest}", content=b"not it")
    assert forged.status_code == 400
    assert error_code(forged) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/dedup/thief/blobs/{digest}")).status_code == 404
    honest = await client.post(f"/v2/dedup/second/blobs/uploads/?digest={digest}", content=DATA)
    assert honest.status_code == 201
    assert (await client.get(f"/v2/dedup/second/blobs/{digest}")).content == DATA


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b2", "1_0", " 5", "+5"])
async def test_content_length_that_is_not_ascii_digits_is_refused(
    client: httpx.AsyncClient, length: str
) -> None:
    # '²' passes str.isdigit(); int() then raised and the client got a 500.
    digest = digest_of(b"")
    for path in (f"/v2/up/cl/blobs/uploads/?digest={digest}", "/v2/up/cl/manifests/latest"):
        method = "POST" if "uploads" in path else "PUT"
        headers = [(b"Content-Length", length.encode("latin-1"))]  # as sent on the wire
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert error_code(response) == "SIZE_INVALID"


async def test_a_chunk_sent_while_another_request_writes_is_told_to_retry(
    client: httpx.AsyncClient,
) -> None:
    location = await start(client, "up/busy")
    writing, go_on = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield DATA[:100]
        writing.set()
        await go_on.wait()
        yield DATA[100:]

    first = asyncio.create_task(client.patch(location, content=slow_body()))
    await writing.wait()
    await asyncio.sleep(0.2)  # the first PATCH holds the session
    busy = await patch(client, location, 0, DATA[:10])
    # Not 416 (the offset is right): 429, retry later, with the progress headers.
    assert busy.status_code == 429, busy.text
    assert error_code(busy) == "TOOMANYREQUESTS"
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["range"] == "0-0"
    assert busy.headers["location"] == location
    go_on.set()
    assert (await first).status_code == 202
    assert (await client.put(f"{location}?digest={digest_of(DATA)}")).status_code == 201
