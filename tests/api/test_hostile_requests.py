"""Hostile requests (issue 9, item 4), in process: escapes that alias a path segment, bodies
trickled byte by byte, oversized headers, and manifests two parsers would read differently.
The same defects against a real ``moorage serve`` are in tests/e2e/test_hostile_requests.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.support import (
    OCI_INDEX,
    OCI_MANIFEST,
    ClientFactory,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)

# Long enough for a loaded test machine to deliver a piece, short enough to keep tests quick.
IDLE_TIMEOUT = 0.5
# How long a trickling client waits between bytes: well past the idle timeout.
TRICKLE_PAUSE = 30.0
# A test that is still waiting after this long is hanging: the defect is back.
HANG_GUARD = 10.0


# --- a: escapes that could alias a path segment ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/team%2Fapp/blobs/uploads/"),
        ("POST", "/v2/team%2fapp/blobs/uploads/"),
        ("GET", "/v2/team%2Fapp/tags/list"),
        ("GET", "/v2/team/app/manifests/v1%2F..%2F..%2Fother"),
        ("GET", "/v2/te%61m/app/tags/list"),  # an unreserved character, escaped
        ("GET", "/v2/team/%2E%2E/app/tags/list"),
        ("GET", "/v2/team/app/manifests/%2e%2e"),
        ("PATCH", "/v2/team/app/blobs/uploads/%2e%2e"),
        ("GET", "/v2/_c%61talog"),
        ("GET", "/%76%32/_catalog"),
    ],
)
async def test_escaped_slash_or_unreserved_character_is_refused(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 400, response.text
    assert error_code(response) == "NAME_INVALID"


async def test_escaped_slash_in_the_name_starts_no_upload(client: httpx.AsyncClient) -> None:
    """The reported defect: the session used to be created for ``team/app``."""
    refused = await client.post("/v2/team%2Fapp/blobs/uploads/")
    assert refused.status_code == 400
    assert "location" not in refused.headers
    catalog = await client.get("/v2/_catalog")
    assert "team/app" not in catalog.json()["repositories"]


async def test_an_escaped_colon_in_a_digest_is_still_understood(
    client: httpx.AsyncClient,
) -> None:
    """Escapes of characters no name, tag or digest grammar allows unescaped are not aliases:
    some clients escape the ``:`` of a digest, and that keeps working."""
    data = b"escaped colon"
    digest = await push_blob(client, "esc/colon", data)
    response = await client.get(f"/v2/esc/colon/blobs/{digest.replace(':', '%3A')}")
    assert response.status_code == 200, response.text
    assert response.content == data


# --- b: a body trickled byte by byte -----------------------------------------------------------


async def _trickle(first: bytes) -> AsyncIterator[bytes]:
    """Sends ``first``, then stalls far longer than the idle timeout."""
    yield first
    await asyncio.sleep(TRICKLE_PAUSE)
    yield b"never sent"


async def test_a_stalled_patch_is_answered_408_and_the_chunk_discarded(
    make_client: ClientFactory,
) -> None:
    async with make_client(limits={"body_idle_timeout_seconds": IDLE_TIMEOUT}) as client:
        start = await client.post("/v2/slow/patch/blobs/uploads/")
        location = start.headers["location"]
        first = await client.patch(location, content=b"0123456789")
        assert first.headers["range"] == "0-9"
        async with asyncio.timeout(HANG_GUARD):
            stalled = await client.patch(
                location,
                content=_trickle(b"abc"),
                headers={"Content-Range": "10-109", "Content-Length": "100"},
            )
        assert stalled.status_code == 408, stalled.text
        assert error_code(stalled) == "BLOB_UPLOAD_INVALID"
        assert stalled.headers["connection"] == "close"
        # The partial chunk is gone and the session is free: it continues from 10 at once.
        status = await client.get(location)
        assert (status.status_code, status.headers["range"]) == (204, "0-9")
        rest = await client.patch(location, content=b"abcdef", headers={"Content-Range": "10-15"})
        assert (rest.status_code, rest.headers["range"]) == (202, "0-15")
        digest = digest_of(b"0123456789abcdef")
        done = await client.put(f"{location}?digest={digest}")
        assert done.status_code == 201, done.text


async def test_a_stalled_manifest_put_is_answered_408(make_client: ClientFactory) -> None:
    async with make_client(limits={"body_idle_timeout_seconds": IDLE_TIMEOUT}) as client:
        async with asyncio.timeout(HANG_GUARD):
            stalled = await client.put(
                "/v2/slow/manifest/manifests/v1",
                content=_trickle(b'{"schemaVersion":'),
                headers={"Content-Type": OCI_MANIFEST, "Content-Length": "500"},
            )
        assert stalled.status_code == 408, stalled.text
        assert (await client.get("/v2/slow/manifest/manifests/v1")).status_code == 404


async def test_a_stalled_monolithic_push_stores_nothing(make_client: ClientFactory) -> None:
    digest = digest_of(b"whatever")
    async with make_client(limits={"body_idle_timeout_seconds": IDLE_TIMEOUT}) as client:
        async with asyncio.timeout(HANG_GUARD):
            stalled = await client.post(
                f"/v2/slow/mono/blobs/uploads/?digest={digest}",
                content=_trickle(b"what"),
                headers={"Content-Length": "8"},
            )
        assert stalled.status_code == 408, stalled.text
        assert (await client.head(f"/v2/slow/mono/blobs/{digest}")).status_code == 404


async def test_a_slow_body_that_keeps_coming_is_read_whole(make_client: ClientFactory) -> None:
    """The timeout is between two pieces, not for the whole body."""
    pieces = [bytes([i]) * 10 for i in range(8)]

    async def steady() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(IDLE_TIMEOUT / 4)
            yield piece

    data = b"".join(pieces)
    digest = digest_of(data)
    async with make_client(limits={"body_idle_timeout_seconds": IDLE_TIMEOUT}) as client:
        response = await client.post(
            f"/v2/slow/steady/blobs/uploads/?digest={digest}",
            content=steady(),
            headers={"Content-Length": str(len(data))},
        )
        assert response.status_code == 201, response.text


# --- c: oversized headers ------------------------------------------------------------------------


async def test_headers_over_the_limit_get_431(make_client: ClientFactory) -> None:
    async with make_client(limits={"header_max_bytes": 4096}) as client:
        too_big = await client.get("/v2/", headers={"X-Padding": "a" * 4096})
        assert too_big.status_code == 431, too_big.text
        assert error_code(too_big) == "SIZE_INVALID"
        # The limit is on the total, not on each header.
        many = {f"X-Pad-{i}": "a" * 200 for i in range(25)}
        assert (await client.get("/v2/", headers=many)).status_code == 431
        assert (await client.get("/v2/", headers={"X-Padding": "a" * 3000})).status_code == 200


async def test_the_default_header_limit_is_16_kib(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/", headers={"X-Padding": "a" * 15_000})).status_code == 200
    assert (await client.get("/v2/", headers={"X-Padding": "a" * 64 * 1024})).status_code == 431


# --- d: manifests two parsers would read differently -------------------------------------------


async def _image_parts(client: httpx.AsyncClient, repo: str) -> tuple[str, int, str, int]:
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"a layer of twenty b."
    return (
        await push_blob(client, repo, config),
        len(config),
        await push_blob(client, repo, layer),
        len(layer),
    )


async def _put(
    client: httpx.AsyncClient, repo: str, body: bytes, media_type: str
) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/t", content=body, headers={"Content-Type": media_type}
    )


async def test_a_duplicated_key_is_refused(client: httpx.AsyncClient) -> None:
    config, config_size, layer, layer_size = await _image_parts(client, "dup/keys")
    good = image_manifest(config, config_size, [(layer, layer_size)]).decode()
    # Python's json keeps the last of two keys, Go's the last too but other parsers the first:
    # the registry and a scanner behind it could then see different images.
    doubled = good.replace('"schemaVersion": 2', '"layers": [], "schemaVersion": 2', 1)
    response = await _put(client, "dup/keys", doubled.encode(), OCI_MANIFEST)
    assert response.status_code == 400, response.text
    assert error_code(response) == "MANIFEST_INVALID"
    assert response.json()["errors"][0]["detail"] == {"key": "layers"}
    assert (await client.get("/v2/dup/keys/manifests/t")).status_code == 404


async def test_a_layer_size_that_is_not_the_blobs_is_refused(client: httpx.AsyncClient) -> None:
    config, config_size, layer, layer_size = await _image_parts(client, "size/layer")
    for body in (
        image_manifest(config, config_size, [(layer, layer_size + 1)]),
        image_manifest(config, config_size, [(layer, layer_size - 1)]),
        image_manifest(config, config_size + 1, [(layer, layer_size)]),
    ):
        response = await _put(client, "size/layer", body, OCI_MANIFEST)
        assert response.status_code == 400, response.text
        assert error_code(response) == "MANIFEST_INVALID"
        detail = response.json()["errors"][0]["detail"]
        assert detail["digest"] in (config, layer)
        assert detail["size"] != detail["stored"]
    right = image_manifest(config, config_size, [(layer, layer_size)])
    assert (await _put(client, "size/layer", right, OCI_MANIFEST)).status_code == 201


async def test_a_child_manifest_size_that_is_not_its_length_is_refused(
    client: httpx.AsyncClient,
) -> None:
    child, child_bytes = await push_image(client, "size/index", tag=None)

    def index(size: int) -> bytes:
        child_descriptor = {"mediaType": OCI_MANIFEST, "digest": child, "size": size}
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child_descriptor]}
        return json.dumps(body).encode()

    response = await _put(client, "size/index", index(len(child_bytes) + 7), OCI_INDEX)
    assert response.status_code == 400, response.text
    assert error_code(response) == "MANIFEST_INVALID"
    assert response.json()["errors"][0]["detail"] == {
        "digest": child,
        "size": len(child_bytes) + 7,
        "stored": len(child_bytes),
    }
    assert (await _put(client, "size/index", index(len(child_bytes)), OCI_INDEX)).status_code == 201
