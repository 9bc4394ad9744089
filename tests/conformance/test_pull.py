"""Pull: the workflow every conformant registry MUST support.

Spec sections: "Determining Support", "Pulling manifests", "Pulling blobs", "Checking if
content exists in the registry", plus RFC 9110 ranges on blobs (resumable pull).
"""

from __future__ import annotations

import httpx
import pytest

from .oci_client import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    assert_error,
    assert_status,
    content_digest,
    describe,
    digest_of,
    encode,
    get_manifest,
    image_manifest,
    missing_digest,
    push_blob,
    push_image,
    push_index,
    random_bytes,
    unique_repo,
)


async def test_api_version_check(registry: httpx.AsyncClient) -> None:
    response = await registry.get("/v2/")
    assert_status(response, 200)
    assert response.headers.get("docker-distribution-api-version") == "registry/2.0", describe(
        response
    )


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_pull_manifest(registry: httpx.AsyncClient, repo: str, method: str, by: str) -> None:
    image = await push_image(registry, repo, tag="v1")
    reference = "v1" if by == "tag" else image.digest

    response = await get_manifest(registry, repo, reference, method)

    assert_status(response, 200)
    assert response.headers.get("content-type") == OCI_MANIFEST, describe(response)
    assert response.headers.get("docker-content-digest") == image.digest, describe(response)
    assert response.headers.get("content-length") == str(len(image.body)), describe(response)
    if method == "GET":
        assert response.content == image.body, "manifest bytes changed between push and pull"
        assert digest_of(response.content) == image.digest
    else:
        assert response.content == b"", f"HEAD must not have a body: {describe(response)}"


async def test_pull_image_index(registry: httpx.AsyncClient, repo: str) -> None:
    amd64 = await push_image(registry, repo)
    arm64 = await push_image(registry, repo)
    index = await push_index(registry, repo, [amd64.descriptor, arm64.descriptor], tag="multi")

    for reference in ("multi", index.digest):
        response = await get_manifest(registry, repo, reference)
        assert_status(response, 200)
        assert response.headers.get("content-type") == OCI_INDEX, describe(response)
        assert response.headers.get("docker-content-digest") == index.digest, describe(response)
        assert response.content == index.body
    # The children stay pullable by digest.
    response = await get_manifest(registry, repo, arm64.digest)
    assert_status(response, 200)
    assert response.content == arm64.body


async def test_pull_manifest_keeps_exact_bytes(registry: httpx.AsyncClient, repo: str) -> None:
    """The registry must store the manifest byte for byte: odd spacing, key order, unicode."""
    image = await push_image(registry, repo)
    assert image.config is not None
    layers = ",".join(
        f'{{"size":{layer.size},"digest":"{layer.digest}","mediaType":"{layer.media_type}"}}'
        for layer in image.layers
    )
    config = image.config
    config_json = (
        f'{{"mediaType":"{config.media_type}","digest":"{config.digest}","size":{config.size}}}'
    )
    odd = (
        f'{{ "layers":[{layers}],\n\t"schemaVersion" :2 ,"config":{config_json},'
        f'"mediaType":"{OCI_MANIFEST}","annotations":{{"note":"caf\\u00e9 \u2615"}}   }}\r\n'
    ).encode()
    response = await registry.put(
        f"/v2/{repo}/manifests/odd", content=odd, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_status(response, 201)

    response = await get_manifest(registry, repo, "odd")
    assert_status(response, 200)
    assert response.content == odd
    assert response.headers.get("docker-content-digest") == digest_of(odd), describe(response)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_pull_blob(registry: httpx.AsyncClient, repo: str, method: str) -> None:
    data = random_bytes(4096 + 7)
    digest = await push_blob(registry, repo, data)

    response = await registry.request(method, f"/v2/{repo}/blobs/{digest}")

    assert_status(response, 200)
    assert content_digest(response) == digest, describe(response)
    assert response.headers.get("content-length") == str(len(data)), describe(response)
    if method == "GET":
        assert response.content == data
    else:
        assert response.content == b"", f"HEAD must not have a body: {describe(response)}"


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=100-", 100, 299),
        ("bytes=-25", 275, 299),
        ("bytes=290-5000", 290, 299),
    ],
)
async def test_pull_blob_range(
    registry: httpx.AsyncClient, repo: str, range_header: str, first: int, last: int
) -> None:
    """Resumable pull: a satisfiable Range gets 206 with exactly those bytes."""
    data = random_bytes(300)
    digest = await push_blob(registry, repo, data)

    response = await registry.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": range_header})

    assert_status(response, 206)
    assert response.content == data[first : last + 1]
    assert response.headers.get("content-range") == f"bytes {first}-{last}/{len(data)}", describe(
        response
    )
    assert response.headers.get("content-length") == str(last - first + 1), describe(response)


@pytest.mark.parametrize("range_header", ["bytes=300-", "bytes=1000-2000"])
async def test_pull_blob_range_not_satisfiable(
    registry: httpx.AsyncClient, repo: str, range_header: str
) -> None:
    data = random_bytes(300)
    digest = await push_blob(registry, repo, data)

    response = await registry.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": range_header})

    assert_status(response, 416)
    assert response.headers.get("content-range") == f"bytes */{len(data)}", describe(response)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_pull_unknown_blob(registry: httpx.AsyncClient, repo: str, method: str) -> None:
    await push_image(registry, repo, tag="exists")  # the repository exists, the blob does not
    response = await registry.request(method, f"/v2/{repo}/blobs/{missing_digest()}")
    assert_error(response, 404, "BLOB_UNKNOWN")


async def test_blob_is_scoped_to_its_repository(registry: httpx.AsyncClient, repo: str) -> None:
    """A blob pushed to one repository is not pullable through another one."""
    other = unique_repo("other")
    await push_image(registry, other, tag="exists")
    digest = await push_blob(registry, repo, random_bytes(128))

    response = await registry.get(f"/v2/{other}/blobs/{digest}")
    assert_error(response, 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_pull_unknown_manifest(
    registry: httpx.AsyncClient, repo: str, method: str, by: str
) -> None:
    await push_image(registry, repo, tag="exists")
    reference = "no-such-tag" if by == "tag" else missing_digest()
    response = await registry.request(
        method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert_error(response, 404, "MANIFEST_UNKNOWN")


# References that are neither a valid tag nor a valid digest. The first is the one the OCI
# conformance suite (distribution-spec v1.1.1) pulls in its pull and push workflows.
INVALID_REFERENCES = [
    pytest.param(".INVALID_MANIFEST_NAME", id="oci-suite-leading-dot"),
    pytest.param("-dash", id="leading-dash"),
    pytest.param("x" * 129, id="129-characters"),
    pytest.param("sha256:totallywrong", id="malformed-digest"),
    pytest.param("md5:" + "a" * 32, id="unsupported-algorithm"),
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("reference", INVALID_REFERENCES)
async def test_pull_manifest_by_invalid_reference_is_unknown(
    registry: httpx.AsyncClient, repo: str, method: str, reference: str
) -> None:
    """No manifest can exist under such a reference: 404 MANIFEST_UNKNOWN, not a 400."""
    await push_image(registry, repo, tag="exists")
    response = await registry.request(
        method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert_error(response, 404, "MANIFEST_UNKNOWN")


async def test_pull_from_unknown_repository(registry: httpx.AsyncClient, repo: str) -> None:
    """Nothing was ever pushed to ``repo``: every pull is a 404 with a matching code."""
    response = await get_manifest(registry, repo, "latest")
    assert_error(response, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    response = await get_manifest(registry, repo, missing_digest())
    assert_error(response, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    response = await registry.get(f"/v2/{repo}/blobs/{missing_digest()}")
    assert_error(response, 404, "NAME_UNKNOWN", "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    ("media_type", "with_field"),
    [
        pytest.param(DOCKER_MANIFEST, True, id="docker-schema2"),
        pytest.param(OCI_MANIFEST, False, id="oci-without-mediaType-field"),
    ],
)
async def test_pull_manifest_content_type_is_the_pushed_one(
    registry: httpx.AsyncClient, repo: str, media_type: str, with_field: bool
) -> None:
    """GET answers with the media type the manifest was pushed with."""
    config = b'{"architecture":"arm64","os":"linux"}'
    layer = random_bytes(256)
    await push_blob(registry, repo, config)
    await push_blob(registry, repo, layer)
    docker = media_type == DOCKER_MANIFEST
    document = image_manifest(
        Descriptor.of(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        [Descriptor.of(DOCKER_LAYER if docker else OCI_LAYER, layer)],
    )
    if with_field:
        document["mediaType"] = media_type
    else:
        del document["mediaType"]
    body = encode(document)
    response = await registry.put(
        f"/v2/{repo}/manifests/typed", content=body, headers={"Content-Type": media_type}
    )
    assert_status(response, 201)

    for method in ("GET", "HEAD"):
        response = await get_manifest(registry, repo, "typed", method)
        assert_status(response, 200)
        assert response.headers.get("content-type") == media_type, describe(response)
        assert response.headers.get("docker-content-digest") == digest_of(body), describe(response)


@pytest.mark.parametrize(
    "shape",
    [
        "deep/nested/path/of/components",
        "with__double__underscores",
        "with---several-dashes.and.dots",
        "looks/like/manifests",
        "looks/like/blobs/uploads",
        "looks/like/tags/list",
        "looks/like/referrers",
    ],
)
async def test_repository_name_shapes(registry: httpx.AsyncClient, shape: str) -> None:
    """Every name the spec's grammar allows works, including ones that look like routes."""
    repo = f"{unique_repo('names')}/{shape}"
    image = await push_image(registry, repo, tag="latest")

    response = await get_manifest(registry, repo, "latest")
    assert_status(response, 200)
    assert response.content == image.body
    for layer in image.layers:
        blob = await registry.get(f"/v2/{repo}/blobs/{layer.digest}")
        assert_status(blob, 200)
        assert digest_of(blob.content) == layer.digest
    tags = await registry.get(f"/v2/{repo}/tags/list")
    assert_status(tags, 200)
    assert tags.json() == {"name": repo, "tags": ["latest"]}


async def test_tags_are_case_sensitive(registry: httpx.AsyncClient, repo: str) -> None:
    upper = await push_image(registry, repo, tag="Release_1")
    lower = await push_image(registry, repo, tag="release_1")

    for tag, image in (("Release_1", upper), ("release_1", lower)):
        response = await get_manifest(registry, repo, tag)
        assert_status(response, 200)
        assert response.content == image.body
