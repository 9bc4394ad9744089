"""Manifest PUT/GET/HEAD/DELETE: validation, references, limits, tags."""

from __future__ import annotations

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

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def test_get_by_tag_and_digest_returns_exact_bytes(client: httpx.AsyncClient) -> None:
    digest, manifest = await push_image(client, "m/exact")
    for reference in ("latest", digest):
        got = await client.get(f"/v2/m/exact/manifests/{reference}")
        assert got.status_code == 200
        assert got.content == manifest
        assert got.headers["content-type"] == OCI_MANIFEST
        assert got.headers["docker-content-digest"] == digest
        head = await client.head(f"/v2/m/exact/manifests/{reference}")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(manifest))
        assert head.content == b""


async def test_put_answers_location_and_digest(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/put", b"{}")
    manifest = image_manifest(config, 2, [])
    response = await client.put(
        "/v2/m/put/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest_of(manifest)
    assert response.headers["location"] == f"/v2/m/put/manifests/{digest_of(manifest)}"


async def test_docker_schema2_and_manifest_list(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/docker", b'{"os":"linux"}')
    layer = await push_blob(client, "m/docker", b"layer")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config,
                "size": 14,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer,
                    "size": 5,
                }
            ],
        }
    ).encode()
    put = await client.put(
        "/v2/m/docker/manifests/amd64", content=manifest, headers={"Content-Type": DOCKER_V2}
    )
    assert put.status_code == 201, put.text
    listing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_V2,
                    "digest": digest_of(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    put = await client.put(
        "/v2/m/docker/manifests/multi", content=listing, headers={"Content-Type": DOCKER_LIST}
    )
    assert put.status_code == 201, put.text
    got = await client.get("/v2/m/docker/manifests/multi")
    assert got.headers["content-type"] == DOCKER_LIST
    assert got.content == listing


async def test_index_with_missing_child_is_refused(client: httpx.AsyncClient) -> None:
    child, child_bytes = await push_image(client, "m/index", tag=None)
    missing = digest_of(b"not a manifest here")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_bytes)},
                {"mediaType": OCI_MANIFEST, "digest": missing, "size": 10},
            ],
        }
    ).encode()
    response = await client.put(
        "/v2/m/index/manifests/all", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert missing in json.dumps(response.json())
    assert (await client.get("/v2/m/index/manifests/all")).status_code == 404


async def test_manifest_with_missing_layer_is_refused(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/missing", b"{}")
    manifest = image_manifest(config, 2, [(digest_of(b"never uploaded"), 14)])
    response = await client.put(
        "/v2/m/missing/manifests/t", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"


async def test_layer_from_another_repository_does_not_count(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/mine", b"{}")
    foreign = await push_blob(client, "m/theirs", b"their layer")
    manifest = image_manifest(config, 2, [(foreign, 11)])
    response = await client.put(
        "/v2/m/mine/manifests/t", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"


async def test_subject_may_be_missing_and_is_echoed(client: httpx.AsyncClient) -> None:
    subject = digest_of(b"image pushed later")
    digest, _ = await push_image(
        client,
        "m/subject",
        tag=None,
        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 18},
        artifactType="application/vnd.example.sbom",
    )
    referrers = await client.get(f"/v2/m/subject/referrers/{subject}")
    assert [m["digest"] for m in referrers.json()["manifests"]] == [digest]


async def test_put_with_subject_returns_oci_subject_header(client: httpx.AsyncClient) -> None:
    subject, _ = await push_image(client, "m/sub2")
    config = await push_blob(client, "m/sub2", b"{}")
    manifest = image_manifest(
        config, 2, [], subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
    )
    response = await client.put(
        f"/v2/m/sub2/manifests/{digest_of(manifest)}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201
    assert response.headers["oci-subject"] == subject


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {',
            OCI_MANIFEST,
        ),
        (b"[1, 2, 3]", OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 3, "config": {"mediaType": "a/b", "digest": "sha256:'
            + b"a" * 64
            + b'", "size": 1}, "layers": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:BAD", "size": 1}, "layers": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:'
            + b"a" * 64
            + b'", "size": -1}, "layers": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "manifests": [], "layers": [], "config": {"mediaType": "a/b", "digest": "sha256:'
            + b"a" * 64
            + b'", "size": 1}}',
            OCI_INDEX,
        ),
        (b"\xff\xfe\x00garbage", OCI_MANIFEST),
        (b"", OCI_MANIFEST),
    ],
)
async def test_invalid_manifests_get_400(
    client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    response = await client.put(
        "/v2/m/invalid/manifests/t", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    assert error_code(response) == "MANIFEST_INVALID"
    assert (await client.get("/v2/m/invalid/manifests/t")).status_code == 404


async def test_schema1_is_refused_with_a_clear_message(client: httpx.AsyncClient) -> None:
    body = json.dumps(
        {"schemaVersion": 1, "name": "m/old", "tag": "t", "fsLayers": [], "history": []}
    ).encode()
    response = await client.put(
        "/v2/m/old/manifests/t",
        content=body,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_INVALID"
    assert "schema 1" in response.json()["errors"][0]["message"]


async def test_digest_in_url_must_match_content(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/urldigest", b"{}")
    manifest = image_manifest(config, 2, [])
    response = await client.put(
        f"/v2/m/urldigest/manifests/{digest_of(b'other')}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


@pytest.mark.parametrize("tag", ["-leading", "a" * 129, "has space", "sl/ash", ".dot"])
async def test_invalid_tags_are_refused(client: httpx.AsyncClient, tag: str) -> None:
    config = await push_blob(client, "m/tags", b"{}")
    manifest = image_manifest(config, 2, [])
    response = await client.put(
        f"/v2/m/tags/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code in (400, 404)
    if response.status_code == 400:
        assert error_code(response) in ("MANIFEST_INVALID", "NAME_INVALID")


async def test_an_invalid_reference_is_refused_on_push_and_unknown_otherwise(
    client: httpx.AsyncClient,
) -> None:
    """Only a push can be told its tag is invalid; a pull or a delete of a reference nothing
    can be stored under asks for a manifest that does not exist."""
    config = await push_blob(client, "m/badref", b"{}")
    manifest = image_manifest(config, 2, [])
    url = "/v2/m/badref/manifests/.INVALID_MANIFEST_NAME"
    pushed = await client.put(url, content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert pushed.status_code == 400
    assert error_code(pushed) == "MANIFEST_INVALID"
    for method in ("GET", "DELETE"):
        response = await client.request(method, url)
        assert response.status_code == 404, (method, response.text)
        assert error_code(response) == "MANIFEST_UNKNOWN"
    assert (await client.head(url)).status_code == 404


async def test_size_limit_with_content_length(make_client: ClientFactory) -> None:
    async with make_client(limits={"manifest_max_bytes": 1024}) as client:
        body = b"{" + b" " * 2000 + b"}"
        response = await client.put(
            "/v2/m/big/manifests/t", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status_code == 413
        assert error_code(response) == "SIZE_INVALID"


async def test_size_limit_with_chunked_body_is_cut_off(make_client: ClientFactory) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10_000):
            sent += 1024
            yield b" " * 1024

    async with make_client(limits={"manifest_max_bytes": 4096}) as client:
        response = await client.put(
            "/v2/m/big/manifests/t", content=endless(), headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status_code == 413
        assert sent < 100 * 1024  # stopped reading long before the end


async def test_default_limit_accepts_4_mib(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/four", b"{}")
    manifest = image_manifest(config, 2, [], annotations={"pad": "x" * (4 * 1024 * 1024 - 400)})
    assert len(manifest) <= 4 * 1024 * 1024
    response = await client.put(
        "/v2/m/four/manifests/t", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text[:200]


async def test_content_type_must_match_media_type(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/ctype", b"{}")
    manifest = image_manifest(config, 2, [])
    response = await client.put(
        "/v2/m/ctype/manifests/t", content=manifest, headers={"Content-Type": DOCKER_V2}
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_INVALID"


async def test_retag_moves_the_tag(client: httpx.AsyncClient) -> None:
    first, _ = await push_image(client, "m/retag", tag="stable", seed=b"1")
    second, _ = await push_image(client, "m/retag", tag="stable", seed=b"2")
    got = await client.get("/v2/m/retag/manifests/stable")
    assert got.headers["docker-content-digest"] == second
    assert (await client.get(f"/v2/m/retag/manifests/{first}")).status_code == 200
    assert (await client.get("/v2/m/retag/tags/list")).json()["tags"] == ["stable"]


async def test_put_by_digest_with_tag_query(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/tagq", b"{}")
    manifest = image_manifest(config, 2, [])
    digest = digest_of(manifest)
    response = await client.put(
        f"/v2/m/tagq/manifests/{digest}?tag=a&tag=b",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201
    assert (await client.get("/v2/m/tagq/tags/list")).json()["tags"] == ["a", "b"]
    bad = await client.put(
        f"/v2/m/tagq/manifests/{digest}?tag=-bad",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert bad.status_code == 400


async def test_delete_by_tag_keeps_manifest(client: httpx.AsyncClient) -> None:
    digest, _ = await push_image(client, "m/deltag")
    assert (await client.delete("/v2/m/deltag/manifests/latest")).status_code == 202
    assert (await client.get("/v2/m/deltag/manifests/latest")).status_code == 404
    assert (await client.get(f"/v2/m/deltag/manifests/{digest}")).status_code == 200


async def test_delete_by_digest_removes_its_tags(client: httpx.AsyncClient) -> None:
    digest, _ = await push_image(client, "m/deldigest")
    assert (await client.delete(f"/v2/m/deldigest/manifests/{digest}")).status_code == 202
    gone = await client.get(f"/v2/m/deldigest/manifests/{digest}")
    assert gone.status_code == 404
    assert error_code(gone) == "MANIFEST_UNKNOWN"
    assert (await client.get("/v2/m/deldigest/manifests/latest")).status_code == 404
    assert (await client.get("/v2/m/deldigest/tags/list")).json()["tags"] == []
    again = await client.delete(f"/v2/m/deldigest/manifests/{digest}")
    assert again.status_code == 404


async def test_manifest_delete_disabled(make_client: ClientFactory) -> None:
    async with make_client(delete_enabled=False) as client:
        digest, _ = await push_image(client, "m/nodelete")
        for reference in ("latest", digest):
            response = await client.delete(f"/v2/m/nodelete/manifests/{reference}")
            assert response.status_code == 405
            assert error_code(response) == "UNSUPPORTED"
        assert (await client.get("/v2/m/nodelete/manifests/latest")).status_code == 200


async def test_unknown_manifest_is_404(client: httpx.AsyncClient) -> None:
    for reference in ("nope", digest_of(b"nope")):
        response = await client.get(f"/v2/m/unknown/manifests/{reference}")
        assert response.status_code == 404
        assert error_code(response) == "MANIFEST_UNKNOWN"


async def test_foreign_layers_with_urls_need_not_be_pushed(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "m/foreign", b"{}")
    foreign = {
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": digest_of(b"a windows base layer"),
        "size": 20,
        "urls": ["https://mcr.example/layer"],
    }
    manifest = image_manifest(config, 2, [])
    body = json.loads(manifest)
    body["layers"] = [foreign]
    response = await client.put(
        "/v2/m/foreign/manifests/t",
        content=json.dumps(body),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    del foreign["urls"]  # the same layer without urls must be in the registry
    response = await client.put(
        "/v2/m/foreign/manifests/u",
        content=json.dumps(body),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"


async def test_unknown_fields_of_an_index_are_not_validated(client: httpx.AsyncClient) -> None:
    child, child_bytes = await push_image(client, "m/extra", tag=None)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_bytes)}],
        "blobs": [{"mediaType": "x/y", "digest": digest_of(b"absent"), "size": 6}, "junk"],
    }
    response = await client.put(
        "/v2/m/extra/manifests/i", content=json.dumps(index), headers={"Content-Type": OCI_INDEX}
    )
    assert response.status_code == 201, response.text
