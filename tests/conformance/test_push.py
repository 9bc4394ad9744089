"""Push: blob uploads (monolithic, chunked, streamed, mounted) and manifest uploads.

Spec sections: "Pushing blobs", "Pushing a blob monolithically", "Pushing a blob in chunks",
"Cancel a blob upload", "Mounting a blob from another repository", "Pushing Manifests",
"Pushing a manifest with a subject field"; ``digest-algorithm`` and ``?tag=`` come from the
spec's main branch (after v1.1).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from .conftest import RegistryFactory
from .oci_client import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCTET_STREAM,
    Descriptor,
    assert_content_digest,
    assert_error,
    assert_status,
    close_session,
    describe,
    digest_of,
    encode,
    get_manifest,
    image_index,
    image_manifest,
    list_tags,
    missing_digest,
    open_session,
    patch_chunk,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
    random_bytes,
    start_upload,
    unique_repo,
    upload_location,
)


async def assert_blob(client: httpx.AsyncClient, repo: str, data: bytes, digest: str) -> None:
    """The blob is pullable from ``repo`` with exactly ``data``."""
    response = await client.get(f"/v2/{repo}/blobs/{digest}")
    assert_status(response, 200)
    assert response.content == data
    assert_content_digest(response, data, digest)


async def assert_blob_absent(client: httpx.AsyncClient, repo: str, digest: str) -> None:
    response = await client.head(f"/v2/{repo}/blobs/{digest}")
    assert_status(response, 404)


async def assert_created_blob(
    client: httpx.AsyncClient, response: httpx.Response, data: bytes, digest: str
) -> None:
    """A 201 for a finished upload: Location pulls the blob, Docker-Content-Digest matches."""
    assert_status(response, 201)
    assert_content_digest(response, data, digest)
    pulled = await client.get(upload_location(response))
    assert_status(pulled, 200)
    assert pulled.content == data


# --- monolithic ----------------------------------------------------------------------------


async def test_monolithic_single_post(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(2048)
    digest = digest_of(data)

    response = await registry.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": OCTET_STREAM},
    )

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_monolithic_post_then_put(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(2048)
    digest = digest_of(data)

    started = await start_upload(registry, repo)
    assert_status(started, 202)
    location = upload_location(started)

    response = await close_session(registry, location, digest, data)

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_upload_sessions_are_distinct(registry: httpx.AsyncClient, repo: str) -> None:
    first = await open_session(registry, repo)
    second = await open_session(registry, repo)
    assert first != second


async def test_zero_byte_blob(registry: httpx.AsyncClient, repo: str) -> None:
    digest = digest_of(b"")
    location = await open_session(registry, repo)

    response = await close_session(registry, location, digest)

    await assert_created_blob(registry, response, b"", digest)
    head = await registry.head(f"/v2/{repo}/blobs/{digest}")
    assert_status(head, 200)
    assert head.headers.get("content-length") == "0", describe(head)
    assert head.headers.get("docker-content-digest") == digest, describe(head)


# --- chunked -------------------------------------------------------------------------------


async def test_chunked_upload(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(3000)
    digest = digest_of(data)
    location = await open_session(registry, repo)

    for start, end in ((0, 1000), (1000, 2000), (2000, 3000)):
        response = await patch_chunk(registry, location, data[start:end], start)
        assert_status(response, 202)
        assert response.headers.get("range") == f"0-{end - 1}", describe(response)
        location = upload_location(response)

    response = await close_session(registry, location, digest)

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_chunked_upload_final_chunk_in_put(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(2500)
    digest = digest_of(data)
    location = await open_session(registry, repo)
    response = await patch_chunk(registry, location, data[:1500], 0)
    assert_status(response, 202)
    location = upload_location(response)

    response = await close_session(registry, location, digest, data[1500:], start=1500)

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_chunk_out_of_order_is_rejected(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(3000)
    digest = digest_of(data)
    location = await open_session(registry, repo)

    # The first chunk must start at 0.
    response = await patch_chunk(registry, location, data[1000:2000], 1000)
    assert_status(response, 416)

    response = await patch_chunk(registry, location, data[:1000], 0)
    assert_status(response, 202)
    location = upload_location(response)

    # A gap and an overlap are both out of order.
    for start in (1500, 500):
        response = await patch_chunk(registry, location, data[start : start + 1000], start)
        assert_status(response, 416)

    # The session survives the refused chunks: GET tells where to resume, and the client can.
    status = await registry.get(location)
    assert_status(status, 204)
    assert status.headers.get("range") == "0-999", describe(status)
    location = upload_location(status)
    response = await patch_chunk(registry, location, data[1000:], 1000)
    assert_status(response, 202)
    response = await close_session(registry, upload_location(response), digest)
    await assert_created_blob(registry, response, data, digest)


async def test_upload_status(registry: httpx.AsyncClient, repo: str) -> None:
    location = await open_session(registry, repo)
    status = await registry.get(location)
    assert_status(status, 204)
    upload_location(status)

    response = await patch_chunk(registry, location, random_bytes(700), 0)
    assert_status(response, 202)

    status = await registry.get(upload_location(response))
    assert_status(status, 204)
    assert status.headers.get("range") == "0-699", describe(status)
    assert upload_location(status)


async def test_streamed_upload_without_content_range(
    registry: httpx.AsyncClient, repo: str
) -> None:
    """A PATCH with no Content-Range (and no Content-Length: chunked transfer) is accepted."""
    data = random_bytes(10_000)
    digest = digest_of(data)
    location = await open_session(registry, repo)

    async def body() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 1024):
            yield data[offset : offset + 1024]

    response = await registry.patch(
        location, content=body(), headers={"Content-Type": OCTET_STREAM}
    )
    assert_status(response, 202)
    assert response.headers.get("range") == f"0-{len(data) - 1}", describe(response)

    response = await close_session(registry, upload_location(response), digest)

    await assert_created_blob(registry, response, data, digest)


# --- digests -------------------------------------------------------------------------------


async def test_digest_mismatch_is_rejected(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(1024)
    claimed = digest_of(random_bytes(1024))
    location = await open_session(registry, repo)

    response = await close_session(registry, location, claimed, data)

    assert_error(response, 400, "DIGEST_INVALID")
    await assert_blob_absent(registry, repo, claimed)
    await assert_blob_absent(registry, repo, digest_of(data))


async def test_digest_mismatch_single_post_is_rejected(
    registry: httpx.AsyncClient, repo: str
) -> None:
    data = random_bytes(1024)
    claimed = digest_of(random_bytes(1024))

    response = await registry.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": claimed},
        content=data,
        headers={"Content-Type": OCTET_STREAM},
    )

    assert_error(response, 400, "DIGEST_INVALID")
    await assert_blob_absent(registry, repo, claimed)
    await assert_blob_absent(registry, repo, digest_of(data))


async def test_digest_mismatch_after_chunks_is_rejected(
    registry: httpx.AsyncClient, repo: str
) -> None:
    data = random_bytes(2000)
    claimed = digest_of(data[:1000])
    location = await open_session(registry, repo)
    response = await patch_chunk(registry, location, data, 0)
    assert_status(response, 202)

    response = await close_session(registry, upload_location(response), claimed)

    assert_error(response, 400, "DIGEST_INVALID")
    await assert_blob_absent(registry, repo, claimed)
    await assert_blob_absent(registry, repo, digest_of(data))


async def test_sha512_with_digest_algorithm(registry: httpx.AsyncClient, repo: str) -> None:
    """``POST ...?digest-algorithm=sha512`` then chunks and ``PUT ?digest=sha512:...``."""
    data = random_bytes(3000)
    digest = digest_of(data, "sha512")
    location = await open_session(registry, repo, params={"digest-algorithm": "sha512"})
    response = await patch_chunk(registry, location, data, 0)
    assert_status(response, 202)

    response = await close_session(registry, upload_location(response), digest)

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_sha512_plain_digest(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(3000)
    digest = digest_of(data, "sha512")
    location = await open_session(registry, repo)

    response = await close_session(registry, location, digest, data)

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)
    head = await registry.head(f"/v2/{repo}/blobs/{digest}")
    assert_status(head, 200)
    assert head.headers.get("content-length") == str(len(data)), describe(head)


# --- cancel --------------------------------------------------------------------------------


async def test_cancel_upload(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(200)
    location = await open_session(registry, repo)
    response = await patch_chunk(registry, location, data[:100], 0)
    assert_status(response, 202)
    location = upload_location(response)

    response = await registry.delete(location)
    assert_status(response, 204)

    assert_error(await registry.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    response = await patch_chunk(registry, location, data[100:], 100)
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    response = await close_session(registry, location, digest_of(data), data[100:], start=100)
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    await assert_blob_absent(registry, repo, digest_of(data))


async def test_upload_session_is_scoped_to_its_repository(
    registry: httpx.AsyncClient, repo: str
) -> None:
    """An upload opened in one repository cannot be continued through another one's URL."""
    other = unique_repo("other")
    await push_blob(registry, other, random_bytes(10))
    location = await open_session(registry, repo)
    url = httpx.URL(location)
    foreign = url.copy_with(path=url.path.replace(f"/v2/{repo}/", f"/v2/{other}/", 1))
    data = random_bytes(100)

    response = await registry.patch(
        foreign,
        content=data,
        headers={"Content-Type": OCTET_STREAM, "Content-Range": f"0-{len(data) - 1}"},
    )

    assert_status(response, 400, 404)
    response = await registry.put(
        foreign.copy_merge_params({"digest": digest_of(data)}),
        content=data,
        headers={"Content-Type": OCTET_STREAM},
    )
    assert_status(response, 400, 404)
    await assert_blob_absent(registry, other, digest_of(data))
    await assert_blob_absent(registry, repo, digest_of(data))


async def test_unknown_upload_session(registry: httpx.AsyncClient, repo: str) -> None:
    await push_blob(registry, repo, random_bytes(10))  # the repository exists
    location = f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    assert_error(await registry.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    response = await patch_chunk(registry, location, b"abc", 0)
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    response = await close_session(registry, location, digest_of(b"abc"), b"abc")
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


# --- mount ---------------------------------------------------------------------------------


async def test_cross_repository_mount(registry: httpx.AsyncClient, repo: str) -> None:
    source = unique_repo("mount-source")
    data = random_bytes(4096)
    digest = await push_blob(registry, source, data)

    response = await start_upload(registry, repo, params={"mount": digest, "from": source})

    await assert_created_blob(registry, response, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_mount_from_repository_without_the_blob(
    registry: httpx.AsyncClient, repo: str
) -> None:
    """The source lacks the blob: the registry opens an ordinary upload session (202)."""
    source = unique_repo("mount-source")
    await push_blob(registry, source, random_bytes(64))
    data = random_bytes(4096)
    digest = digest_of(data)

    response = await start_upload(registry, repo, params={"mount": digest, "from": source})

    assert_status(response, 202)
    await assert_blob_absent(registry, repo, digest)
    response = await close_session(registry, upload_location(response), digest, data)
    await assert_created_blob(registry, response, data, digest)


async def test_mount_without_from(registry: httpx.AsyncClient, repo: str) -> None:
    """Without ``from`` a registry MAY mount (201) or open an upload session (202)."""
    source = unique_repo("mount-source")
    data = random_bytes(4096)
    digest = await push_blob(registry, source, data)

    response = await start_upload(registry, repo, params={"mount": digest})

    assert_status(response, 201, 202)
    if response.status_code == 202:
        response = await close_session(registry, upload_location(response), digest, data)
    await assert_created_blob(registry, response, data, digest)


# --- manifests -----------------------------------------------------------------------------


async def _image_parts(client: httpx.AsyncClient, repo: str) -> bytes:
    """Push a config and a layer; return the bytes of a manifest referencing them."""
    config = b'{"architecture":"amd64","os":"linux","nonce":"%s"}' % uuid.uuid4().hex.encode()
    layer = random_bytes(512)
    await push_blob(client, repo, config)
    await push_blob(client, repo, layer)
    return encode(
        image_manifest(Descriptor.of(OCI_CONFIG, config), [Descriptor.of(OCI_LAYER, layer)])
    )


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_push_manifest(registry: httpx.AsyncClient, repo: str, by: str) -> None:
    body = await _image_parts(registry, repo)
    digest = digest_of(body)
    reference = "v1.0" if by == "tag" else digest

    response = await put_manifest(registry, repo, reference, body)

    assert_status(response, 201)
    assert response.headers.get("docker-content-digest") == digest, describe(response)
    pulled = await registry.get(upload_location(response), headers={"Accept": OCI_MANIFEST})
    assert_status(pulled, 200)
    assert pulled.content == body
    by_digest = await get_manifest(registry, repo, digest)
    assert_status(by_digest, 200)
    assert by_digest.content == body


async def test_push_manifest_digest_mismatch(registry: httpx.AsyncClient, repo: str) -> None:
    body = await _image_parts(registry, repo)
    wrong = missing_digest()

    response = await put_manifest(registry, repo, wrong, body)

    assert_error(response, 400, "DIGEST_INVALID")
    assert_status(await get_manifest(registry, repo, wrong, "HEAD"), 404)
    assert_status(await get_manifest(registry, repo, digest_of(body), "HEAD"), 404)


async def test_push_manifest_moves_tag(registry: httpx.AsyncClient, repo: str) -> None:
    first = await push_image(registry, repo, tag="latest")
    second = await push_image(registry, repo, tag="latest")

    response = await get_manifest(registry, repo, "latest")
    assert_status(response, 200)
    assert response.content == second.body
    old = await get_manifest(registry, repo, first.digest)
    assert_status(old, 200)
    assert old.content == first.body


async def test_push_manifest_by_digest_with_tags(registry: httpx.AsyncClient, repo: str) -> None:
    """``PUT /manifests/<digest>?tag=a&tag=b`` tags the manifest in the same request."""
    body = await _image_parts(registry, repo)
    digest = digest_of(body)

    response = await put_manifest(registry, repo, digest, body, params=(("tag", "a"), ("tag", "b")))

    assert_status(response, 201)
    assert response.headers.get("docker-content-digest") == digest, describe(response)
    if "oci-tag" in response.headers:
        returned = {t.strip() for t in response.headers["oci-tag"].split(",")}
        assert returned == {"a", "b"}, describe(response)
    for tag in ("a", "b"):
        pulled = await get_manifest(registry, repo, tag)
        assert_status(pulled, 200)
        assert pulled.content == body
        assert pulled.headers.get("docker-content-digest") == digest, describe(pulled)
    tags = await list_tags(registry, repo)
    assert_status(tags, 200)
    assert sorted(tags.json()["tags"]) == ["a", "b"]


async def test_push_manifest_with_unknown_blob(registry: httpx.AsyncClient, repo: str) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    await push_blob(registry, repo, config)
    absent_layer = Descriptor(OCI_LAYER, missing_digest(), 1234)
    body = encode(image_manifest(Descriptor.of(OCI_CONFIG, config), [absent_layer]))

    response = await put_manifest(registry, repo, "broken", body)

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_status(await get_manifest(registry, repo, "broken", "HEAD"), 404)


async def test_push_index_with_unknown_manifest(registry: httpx.AsyncClient, repo: str) -> None:
    present = await push_image(registry, repo)
    absent = Descriptor(OCI_MANIFEST, missing_digest(), 321)
    body = encode(image_index([present.descriptor, absent]))

    response = await put_manifest(registry, repo, "broken", body, OCI_INDEX)

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")


async def test_push_manifest_with_subject(registry: httpx.AsyncClient, repo: str) -> None:
    subject = await push_image(registry, repo, tag="app")

    signature = await push_artifact(registry, repo, subject=subject.descriptor)

    assert signature.response.headers.get("oci-subject") == subject.digest, describe(
        signature.response
    )


async def test_push_manifest_with_missing_subject(registry: httpx.AsyncClient, repo: str) -> None:
    """A registry MUST accept a referrer whose subject is not (yet) in the repository."""
    absent = Descriptor(OCI_MANIFEST, missing_digest(), 1234)

    artifact = await push_artifact(registry, repo, subject=absent)

    pulled = await get_manifest(registry, repo, artifact.digest)
    assert_status(pulled, 200)
    assert pulled.content == artifact.body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"this is not json", id="not-json"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": "nope"}).encode(),
            id="config-not-a-descriptor",
        ),
    ],
)
async def test_push_invalid_manifest(registry: httpx.AsyncClient, repo: str, body: bytes) -> None:
    await push_blob(registry, repo, random_bytes(10))  # the repository exists

    response = await put_manifest(registry, repo, "bad", body)

    assert_error(response, 400, "MANIFEST_INVALID")
    assert_status(await get_manifest(registry, repo, "bad", "HEAD"), 404)


# --- more upload behaviour -----------------------------------------------------------------


async def test_zero_byte_blob_single_post(registry: httpx.AsyncClient, repo: str) -> None:
    digest = digest_of(b"")

    response = await registry.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=b"",
        headers={"Content-Type": OCTET_STREAM},
    )

    await assert_created_blob(registry, response, b"", digest)


async def test_session_is_closed_after_put(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(500)
    location = await open_session(registry, repo)
    response = await patch_chunk(registry, location, data, 0)
    assert_status(response, 202)
    location = upload_location(response)
    assert_status(await close_session(registry, location, digest_of(data)), 201)

    response = await patch_chunk(registry, location, random_bytes(10), len(data))
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await registry.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_final_chunk_out_of_order_in_put(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(2000)
    digest = digest_of(data)
    location = await open_session(registry, repo)
    response = await patch_chunk(registry, location, data[:1000], 0)
    assert_status(response, 202)
    location = upload_location(response)

    response = await close_session(registry, location, digest, data[1200:], start=1200)

    assert_status(response, 416)
    await assert_blob_absent(registry, repo, digest)


async def test_concurrent_uploads_of_the_same_blob(registry: httpx.AsyncClient, repo: str) -> None:
    """Layer de-duplication: two clients upload the same layer at once; both succeed."""
    data = random_bytes(3000)
    digest = digest_of(data)
    first = await open_session(registry, repo)
    second = await open_session(registry, repo)
    first_chunk = await patch_chunk(registry, first, data[:1500], 0)
    second_chunk = await patch_chunk(registry, second, data[:1500], 0)
    assert_status(first_chunk, 202)
    assert_status(second_chunk, 202)

    done_first = await close_session(
        registry, upload_location(first_chunk), digest, data[1500:], start=1500
    )
    done_second = await close_session(
        registry, upload_location(second_chunk), digest, data[1500:], start=1500
    )

    await assert_created_blob(registry, done_first, data, digest)
    await assert_created_blob(registry, done_second, data, digest)
    await assert_blob(registry, repo, data, digest)


async def test_push_existing_blob_again(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(700)
    digest = await push_blob(registry, repo, data)
    assert await push_blob(registry, repo, data) == digest
    await assert_blob(registry, repo, data, digest)


# --- more manifest behaviour ---------------------------------------------------------------


async def test_push_same_manifest_again(registry: httpx.AsyncClient, repo: str) -> None:
    body = await _image_parts(registry, repo)
    for _ in range(2):
        response = await put_manifest(registry, repo, "again", body)
        assert_status(response, 201)
        assert response.headers.get("docker-content-digest") == digest_of(body)
    pulled = await get_manifest(registry, repo, "again")
    assert_status(pulled, 200)
    assert pulled.content == body


async def test_push_four_mebibyte_manifest(registry: httpx.AsyncClient, repo: str) -> None:
    """Registries SHOULD accept manifests of at least 4 MiB; this one is exactly 4 MiB."""
    config = b'{"architecture":"amd64","os":"linux"}'
    await push_blob(registry, repo, config)
    document = image_manifest(Descriptor.of(OCI_CONFIG, config), [], annotations={"pad": ""})
    size = 4 * 1024 * 1024
    document["annotations"]["pad"] = "x" * (size - len(encode(document)))
    body = encode(document)
    assert len(body) == size

    response = await put_manifest(registry, repo, "big", body)

    assert_status(response, 201)
    pulled = await get_manifest(registry, repo, "big")
    assert_status(pulled, 200)
    assert pulled.content == body


@pytest.mark.in_process_only
async def test_push_manifest_over_the_limit(registry_factory: RegistryFactory) -> None:
    repo = unique_repo("manifest-limit")
    async with registry_factory(limits={"manifest_max_bytes": 4096}) as client:
        config = b'{"architecture":"amd64","os":"linux"}'
        await push_blob(client, repo, config)
        document = image_manifest(
            Descriptor.of(OCI_CONFIG, config), [], annotations={"pad": "x" * 5000}
        )

        response = await put_manifest(client, repo, "big", encode(document))

        assert_error(response, 413)
        assert_status(await get_manifest(client, repo, "big", "HEAD"), 404)


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("x" * 129, id="129-characters"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-dash", id="leading-dash"),
        pytest.param("has+plus", id="plus-sign"),
    ],
)
async def test_push_manifest_with_invalid_tag(
    registry: httpx.AsyncClient, repo: str, tag: str
) -> None:
    body = await _image_parts(registry, repo)

    response = await put_manifest(registry, repo, tag, body)

    assert_status(response, 400, 404)
    if response.status_code == 400:
        assert_error(response, 400, "TAG_INVALID", "MANIFEST_INVALID", "NAME_INVALID")
    tags = await list_tags(registry, repo)
    if tags.status_code == 200:
        assert tag not in (tags.json().get("tags") or [])


async def test_push_longest_valid_tag(registry: httpx.AsyncClient, repo: str) -> None:
    body = await _image_parts(registry, repo)
    tag = "_" + "a" * 127

    assert_status(await put_manifest(registry, repo, tag, body), 201)

    pulled = await get_manifest(registry, repo, tag)
    assert_status(pulled, 200)
    assert pulled.content == body


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Upper/case", id="uppercase"),
        pytest.param("trailing-/slash", id="component-ends-with-separator"),
        pytest.param("double//slash", id="empty-component"),
        pytest.param("-leading/dash", id="leading-separator"),
        pytest.param("a" * 256, id="256-characters"),
    ],
)
async def test_push_to_invalid_repository_name(registry: httpx.AsyncClient, name: str) -> None:
    response = await start_upload(registry, name)

    assert_status(response, 400, 404)
    if response.status_code == 400:
        assert_error(response, 400, "NAME_INVALID")
