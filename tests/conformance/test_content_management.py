"""Content management: deleting manifests, tags and blobs, and refusing to when disabled.

Spec sections: "Deleting tags", "Deleting Manifests", "Deleting Blobs". The tests here need a
registry with deletion enabled; the disabled case configures its own (in process only).
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import RegistryFactory
from .oci_client import (
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    Descriptor,
    assert_error,
    assert_status,
    describe,
    encode,
    get_manifest,
    image_manifest,
    list_referrers,
    list_tags,
    missing_digest,
    push_artifact,
    push_blob,
    push_image,
    push_manifest_bytes,
    put_manifest,
    random_bytes,
    unique_repo,
    upload_location,
)


async def _remaining_tags(client: httpx.AsyncClient, repo: str) -> list[str]:
    """The repository's tags; a repository left without any may also answer 404."""
    response = await list_tags(client, repo)
    if response.status_code == 404:
        assert_error(response, 404, "NAME_UNKNOWN")
        return []
    assert_status(response, 200)
    return list(response.json().get("tags") or [])


async def test_delete_manifest_by_digest(registry: httpx.AsyncClient, repo: str) -> None:
    image = await push_image(registry, repo, tag="one")
    await push_manifest_bytes(registry, repo, image.body, tag="two")
    keep = await push_image(registry, repo, tag="keep")

    response = await registry.delete(f"/v2/{repo}/manifests/{image.digest}")

    assert_status(response, 202)
    for reference in (image.digest, "one", "two"):
        assert_error(await get_manifest(registry, repo, reference), 404, "MANIFEST_UNKNOWN")
        assert_status(await get_manifest(registry, repo, reference, "HEAD"), 404)
    assert await _remaining_tags(registry, repo) == ["keep"]
    pulled = await get_manifest(registry, repo, "keep")
    assert_status(pulled, 200)
    assert pulled.content == keep.body


async def test_delete_manifest_twice(registry: httpx.AsyncClient, repo: str) -> None:
    image = await push_image(registry, repo, tag="once")
    assert_status(await registry.delete(f"/v2/{repo}/manifests/{image.digest}"), 202)

    response = await registry.delete(f"/v2/{repo}/manifests/{image.digest}")

    assert_error(response, 404, "MANIFEST_UNKNOWN")


async def test_delete_unknown_manifest(registry: httpx.AsyncClient, repo: str) -> None:
    await push_image(registry, repo, tag="exists")
    response = await registry.delete(f"/v2/{repo}/manifests/{missing_digest()}")
    assert_error(response, 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    "reference", [".INVALID_MANIFEST_NAME", "sha256:totallywrong"], ids=["tag", "digest"]
)
async def test_delete_manifest_by_invalid_reference_is_unknown(
    registry: httpx.AsyncClient, repo: str, reference: str
) -> None:
    """Nothing can be stored under a reference that is neither a valid tag nor a valid digest,
    so deleting it is deleting a manifest that does not exist."""
    await push_image(registry, repo, tag="exists")
    response = await registry.delete(f"/v2/{repo}/manifests/{reference}")
    assert_error(response, 404, "MANIFEST_UNKNOWN")
    assert await _remaining_tags(registry, repo) == ["exists"]


async def test_delete_in_unknown_repository(registry: httpx.AsyncClient) -> None:
    never_pushed = unique_repo("never-pushed")
    response = await registry.delete(f"/v2/{never_pushed}/manifests/{missing_digest()}")
    assert_error(response, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")


async def test_delete_tag(registry: httpx.AsyncClient, repo: str) -> None:
    image = await push_image(registry, repo, tag="doomed")
    await push_manifest_bytes(registry, repo, image.body, tag="stays")

    response = await registry.delete(f"/v2/{repo}/manifests/doomed")

    assert_status(response, 202)
    assert_error(await get_manifest(registry, repo, "doomed"), 404, "MANIFEST_UNKNOWN")
    for reference in (image.digest, "stays"):
        pulled = await get_manifest(registry, repo, reference)
        assert_status(pulled, 200)
        assert pulled.content == image.body
    assert await _remaining_tags(registry, repo) == ["stays"]


async def test_delete_unknown_tag(registry: httpx.AsyncClient, repo: str) -> None:
    await push_image(registry, repo, tag="exists")
    response = await registry.delete(f"/v2/{repo}/manifests/no-such-tag")
    assert_error(response, 404, "MANIFEST_UNKNOWN")


async def test_delete_blob(registry: httpx.AsyncClient, repo: str) -> None:
    data = random_bytes(1000)
    digest = await push_blob(registry, repo, data)
    other = await push_blob(registry, repo, random_bytes(1000))

    response = await registry.delete(f"/v2/{repo}/blobs/{digest}")

    assert_status(response, 202)
    assert_error(await registry.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_status(await registry.head(f"/v2/{repo}/blobs/{digest}"), 404)
    assert_status(await registry.head(f"/v2/{repo}/blobs/{other}"), 200)


async def test_delete_unknown_blob(registry: httpx.AsyncClient, repo: str) -> None:
    await push_blob(registry, repo, random_bytes(10))
    response = await registry.delete(f"/v2/{repo}/blobs/{missing_digest()}")
    assert_error(response, 404, "BLOB_UNKNOWN")


async def test_delete_blob_only_in_one_repository(registry: httpx.AsyncClient, repo: str) -> None:
    """Deleting a blob from one repository leaves it in another that has it too."""
    data = random_bytes(1000)
    other = unique_repo("other")
    digest = await push_blob(registry, repo, data)
    await push_blob(registry, other, data)

    assert_status(await registry.delete(f"/v2/{repo}/blobs/{digest}"), 202)

    assert_status(await registry.head(f"/v2/{repo}/blobs/{digest}"), 404)
    response = await registry.get(f"/v2/{other}/blobs/{digest}")
    assert_status(response, 200)
    assert response.content == data


async def test_deleted_referrer_leaves_referrers_list(
    registry: httpx.AsyncClient, repo: str
) -> None:
    subject = await push_image(registry, repo, tag="app")
    gone = await push_artifact(registry, repo, subject=subject.descriptor)
    kept = await push_artifact(registry, repo, subject=subject.descriptor)

    assert_status(await registry.delete(f"/v2/{repo}/manifests/{gone.digest}"), 202)

    response = await list_referrers(registry, repo, subject.digest)
    assert_status(response, 200)
    assert response.headers.get("content-type") == OCI_INDEX, describe(response)
    assert [m["digest"] for m in response.json()["manifests"]] == [kept.digest]


@pytest.mark.in_process_only
async def test_deletion_disabled(registry_factory: RegistryFactory) -> None:
    """With deletion turned off every DELETE is 405 UNSUPPORTED and nothing disappears."""
    repo = unique_repo("deletion-disabled")
    async with registry_factory(delete_enabled=False) as client:
        image = await push_image(client, repo, tag="kept")
        assert image.config is not None
        blob = image.config.digest

        for path in (
            f"/v2/{repo}/manifests/{image.digest}",
            f"/v2/{repo}/manifests/kept",
            f"/v2/{repo}/blobs/{blob}",
        ):
            assert_error(await client.delete(path), 405, "UNSUPPORTED")

        for reference in (image.digest, "kept"):
            response = await client.get(
                f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
            )
            assert_status(response, 200)
            assert response.content == image.body
        assert_status(await client.head(f"/v2/{repo}/blobs/{blob}"), 200)


async def test_push_again_after_delete(registry: httpx.AsyncClient, repo: str) -> None:
    image = await push_image(registry, repo, tag="phoenix")
    assert_status(await registry.delete(f"/v2/{repo}/manifests/{image.digest}"), 202)

    await push_manifest_bytes(registry, repo, image.body, tag="phoenix")

    for reference in ("phoenix", image.digest):
        pulled = await get_manifest(registry, repo, reference)
        assert_status(pulled, 200)
        assert pulled.content == image.body
    assert await _remaining_tags(registry, repo) == ["phoenix"]


async def test_deleting_old_digest_keeps_moved_tag(registry: httpx.AsyncClient, repo: str) -> None:
    old = await push_image(registry, repo, tag="latest")
    new = await push_image(registry, repo, tag="latest")

    assert_status(await registry.delete(f"/v2/{repo}/manifests/{old.digest}"), 202)

    pulled = await get_manifest(registry, repo, "latest")
    assert_status(pulled, 200)
    assert pulled.content == new.body


async def test_deleted_blob_is_unknown_to_manifests_and_mounts(
    registry: httpx.AsyncClient, repo: str
) -> None:
    data = random_bytes(800)
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = await push_blob(registry, repo, data)
    await push_blob(registry, repo, config)
    assert_status(await registry.delete(f"/v2/{repo}/blobs/{digest}"), 202)

    body = encode(
        image_manifest(Descriptor.of(OCI_CONFIG, config), [Descriptor.of(OCI_LAYER, data)])
    )
    response = await put_manifest(registry, repo, "uses-deleted", body)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")

    target = unique_repo("mount-target")
    response = await registry.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo}
    )
    assert_status(response, 202)
    upload_location(response)  # an ordinary upload session instead of a mount
