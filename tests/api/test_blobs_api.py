"""Blob GET/HEAD/DELETE, ranges, digests, and repository isolation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.support import (
    ClientFactory,
    digest_of,
    error_code,
    push_blob,
    registry_headers,
    served_by_object_store,
)

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(params=["filesystem", "s3", "s3-redirect"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the filesystem, on S3 (moto), and on S3 with redirects."""
    param: str = request.param
    return param


async def test_get_and_head_serve_exact_bytes(
    client: httpx.AsyncClient, backend: str, request: pytest.FixtureRequest
) -> None:
    digest = await push_blob(client, "team/app", DATA)
    got = await client.get(f"/v2/team/app/blobs/{digest}")
    assert got.status_code == 200
    assert got.content == DATA
    assert registry_headers(got)["docker-content-digest"] == digest
    if backend == "s3-redirect":  # the bytes came from the S3 endpoint, not through us
        assert served_by_object_store(got, request.getfixturevalue("moto").endpoint)
    else:
        assert not got.history
    head = await client.head(f"/v2/team/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(DATA))
    assert head.headers["docker-content-digest"] == digest
    assert head.content == b""


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, len(DATA) - 1),
        ("bytes=-5", len(DATA) - 5, len(DATA) - 1),
        ("bytes=100-999999", 100, len(DATA) - 1),
    ],
)
async def test_range_requests_get_206(
    client: httpx.AsyncClient, header: str, first: int, last: int
) -> None:
    digest = await push_blob(client, "r/one", DATA)
    response = await client.get(f"/v2/r/one/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == DATA[first : last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"


@pytest.mark.parametrize(
    "header", ["bytes=20000-", "bytes=zz", "bytes=5-2", "items=0-1", "bytes=-0"]
)
async def test_unsatisfiable_or_garbage_range_gets_416(
    client: httpx.AsyncClient, header: str
) -> None:
    digest = await push_blob(client, "r/two", DATA)
    response = await client.get(f"/v2/r/two/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 416
    assert error_code(response) == "RANGE_INVALID"
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "A" * 64,
        "md5:" + "a" * 32,
        "sha256" + "a" * 64,
        "sha512:" + "a" * 64,
        "notadigest",
    ],
)
async def test_malformed_digests_get_400(client: httpx.AsyncClient, digest: str) -> None:
    response = await client.get(f"/v2/r/three/blobs/{digest}")
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


async def test_blob_of_another_repository_is_not_served(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team-a/secret", DATA)
    response = await client.get(f"/v2/team-b/app/blobs/{digest}")
    assert response.status_code == 404
    assert error_code(response) == "BLOB_UNKNOWN"
    assert (await client.head(f"/v2/team-b/app/blobs/{digest}")).status_code == 404


async def test_delete_unlinks_only_from_that_repository(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "d/one", DATA)
    await push_blob(client, "d/two", DATA)
    response = await client.delete(f"/v2/d/one/blobs/{digest}")
    assert response.status_code == 202
    assert (await client.get(f"/v2/d/one/blobs/{digest}")).status_code == 404
    assert (await client.get(f"/v2/d/two/blobs/{digest}")).content == DATA
    again = await client.delete(f"/v2/d/one/blobs/{digest}")
    assert again.status_code == 404
    assert error_code(again) == "BLOB_UNKNOWN"


async def test_delete_disabled_gets_405_unsupported(make_client: ClientFactory) -> None:
    async with make_client(delete_enabled=False) as client:
        digest = await push_blob(client, "d/three", DATA)
        response = await client.delete(f"/v2/d/three/blobs/{digest}")
        assert response.status_code == 405
        assert error_code(response) == "UNSUPPORTED"
        assert (await client.get(f"/v2/d/three/blobs/{digest}")).status_code == 200


async def test_unknown_blob_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/r/four/blobs/{digest_of(b'never pushed')}")
    assert response.status_code == 404
    assert error_code(response) == "BLOB_UNKNOWN"
    head = await client.head(f"/v2/r/four/blobs/{digest_of(b'never pushed')}")
    assert head.status_code == 404
    assert head.content == b""


# The filesystem only: the test deletes the blob's file from this disk.
@pytest.mark.parametrize("backend", ["filesystem"], indirect=True)
async def test_a_blob_file_gone_after_the_lookup_is_a_404_envelope(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A blob whose bytes are gone (a collection, a lost disk) is BLOB_UNKNOWN, never a 500,
    # for a whole GET and a ranged one.
    data = b"soon gone" * 100
    digest = await push_blob(client, "r/gone", data)
    for path in (tmp_path / "data" / "blobs").rglob(digest.split(":")[1]):
        path.unlink()
    for headers in ({}, {"Range": "bytes=0-9"}):
        response = await client.get(f"/v2/r/gone/blobs/{digest}", headers=headers)
        assert response.status_code == 404, response.text
        assert error_code(response) == "BLOB_UNKNOWN"
