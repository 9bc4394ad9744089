"""Content discovery: listing tags (with pagination), listing referrers, and the catalog.

Spec sections: "Listing Tags", "Listing Referrers"; ``/v2/_catalog`` is the Docker
registry API's repository listing that OCI registries commonly keep.
"""

from __future__ import annotations

import random
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .conftest import RegistryFactory
from .oci_client import (
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Pushed,
    assert_error,
    assert_status,
    describe,
    digest_of,
    encode,
    image_index,
    link_next,
    list_referrers,
    list_tags,
    missing_digest,
    push_artifact,
    push_image,
    push_index,
    push_manifest_bytes,
    unique_repo,
)

TAGS = ["0.1", "1.0", "1.10", "1.9", "alpha", "beta", "latest", "v2", "v2.0.1", "z_last"]
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
CUSTOM_CONFIG = "application/vnd.example.config.v1+json"


async def tag_everything(client: httpx.AsyncClient, repo: str, tags: list[str]) -> None:
    """One manifest, many tags (pushed in shuffled order so sorting is the registry's job)."""
    image = await push_image(client, repo)
    for tag in random.sample(tags, len(tags)):
        await push_manifest_bytes(client, repo, image.body, tag=tag)


# --- tags ----------------------------------------------------------------------------------


async def test_tags_list_is_sorted(registry: httpx.AsyncClient, repo: str) -> None:
    await tag_everything(registry, repo, TAGS)

    response = await list_tags(registry, repo)

    assert_status(response, 200)
    body = response.json()
    assert body["name"] == repo
    assert body["tags"] == sorted(TAGS)


async def test_tags_list_unknown_repository(registry: httpx.AsyncClient, repo: str) -> None:
    assert_error(await list_tags(registry, repo), 404, "NAME_UNKNOWN")


async def test_tags_list_n(registry: httpx.AsyncClient, repo: str) -> None:
    await tag_everything(registry, repo, TAGS)

    response = await list_tags(registry, repo, {"n": "3"})

    assert_status(response, 200)
    assert response.json()["tags"] == sorted(TAGS)[:3]
    target = link_next(response)
    assert target is not None, f"more tags remain but no Link header: {describe(response)}"
    parts = urlsplit(target)
    assert parts.path == f"/v2/{repo}/tags/list", describe(response)
    query = parse_qs(parts.query)
    assert query.get("n") == ["3"], describe(response)
    assert query.get("last") == [sorted(TAGS)[2]], describe(response)


async def test_tags_list_follow_link_pagination(registry: httpx.AsyncClient, repo: str) -> None:
    await tag_everything(registry, repo, TAGS)

    seen: list[str] = []
    pages = 0
    url: str | None = f"/v2/{repo}/tags/list?n=4"
    while url is not None:
        response = await registry.get(url)
        assert_status(response, 200)
        page = response.json()["tags"]
        assert len(page) <= 4
        seen.extend(page)
        pages += 1
        assert pages <= len(TAGS), "pagination does not terminate"
        url = link_next(response)

    assert seen == sorted(TAGS)
    assert pages == 3  # 4 + 4 + 2


async def test_tags_list_last(registry: httpx.AsyncClient, repo: str) -> None:
    await tag_everything(registry, repo, TAGS)
    ordered = sorted(TAGS)

    response = await list_tags(registry, repo, {"last": ordered[4]})
    assert_status(response, 200)
    assert response.json()["tags"] == ordered[5:]

    response = await list_tags(registry, repo, {"n": "2", "last": ordered[4]})
    assert_status(response, 200)
    assert response.json()["tags"] == ordered[5:7]

    # ``last`` is a value, not an index, and need not be a tag that exists.
    response = await list_tags(registry, repo, {"last": "1.5"})
    assert_status(response, 200)
    assert response.json()["tags"] == [t for t in ordered if t > "1.5"]


async def test_tags_list_n_zero(registry: httpx.AsyncClient, repo: str) -> None:
    await tag_everything(registry, repo, TAGS)

    response = await list_tags(registry, repo, {"n": "0"})

    assert_status(response, 200)
    assert response.json()["tags"] == []
    assert "link" not in response.headers, describe(response)


async def test_tags_list_last_page_has_no_link(registry: httpx.AsyncClient, repo: str) -> None:
    await tag_everything(registry, repo, TAGS)

    response = await list_tags(registry, repo, {"n": str(len(TAGS))})
    assert_status(response, 200)
    assert response.json()["tags"] == sorted(TAGS)
    assert link_next(response) is None, describe(response)

    response = await list_tags(registry, repo, {"n": "100"})
    assert_status(response, 200)
    assert response.json()["tags"] == sorted(TAGS)
    assert link_next(response) is None, describe(response)


# --- referrers -----------------------------------------------------------------------------


def _descriptors_by_digest(response: httpx.Response) -> dict[str, dict[str, object]]:
    assert_status(response, 200)
    assert response.headers.get("content-type") == OCI_INDEX, describe(response)
    body = response.json()
    assert body.get("schemaVersion") == 2, describe(response)
    assert body.get("mediaType") == OCI_INDEX, describe(response)
    manifests = body.get("manifests")
    assert isinstance(manifests, list), describe(response)
    return {entry["digest"]: entry for entry in manifests}


def _expected(
    pushed: Pushed, artifact_type: str | None, annotations: dict[str, str] | None
) -> dict[str, object]:
    entry: dict[str, object] = {
        "mediaType": pushed.media_type,
        "digest": pushed.digest,
        "size": len(pushed.body),
    }
    if artifact_type is not None:
        entry["artifactType"] = artifact_type
    if annotations:
        entry["annotations"] = annotations
    return entry


@pytest.fixture
async def referrers(
    registry: httpx.AsyncClient, repo: str
) -> tuple[Pushed, dict[str, dict[str, object]]]:
    """A subject image with three referrers; returns the subject and the expected descriptors.

    * an SBOM with an explicit ``artifactType`` and annotations,
    * a signature with an explicit ``artifactType``,
    * an artifact without ``artifactType``, whose type is its config media type.
    """
    subject = await push_image(registry, repo, tag="app")
    sbom_annotations = {
        "org.opencontainers.image.created": "2024-02-15T00:00:00Z",
        "org.example.sbom.format": "spdx-json",
    }
    sbom = await push_artifact(
        registry,
        repo,
        subject=subject.descriptor,
        artifact_type=SBOM,
        annotations=sbom_annotations,
    )
    signature_annotations = {"org.example.signature.fingerprint": uuid.uuid4().hex}
    signature = await push_artifact(
        registry,
        repo,
        subject=subject.descriptor,
        artifact_type=SIGNATURE,
        annotations=signature_annotations,
    )
    untyped = await push_artifact(
        registry,
        repo,
        subject=subject.descriptor,
        artifact_type=None,
        config_media_type=CUSTOM_CONFIG,
    )
    expected = {
        sbom.digest: _expected(sbom, SBOM, sbom_annotations),
        signature.digest: _expected(signature, SIGNATURE, signature_annotations),
        untyped.digest: _expected(untyped, CUSTOM_CONFIG, None),
    }
    return subject, expected


async def test_referrers_list(
    registry: httpx.AsyncClient,
    repo: str,
    referrers: tuple[Pushed, dict[str, dict[str, object]]],
) -> None:
    subject, expected = referrers

    response = await list_referrers(registry, repo, subject.digest)

    found = _descriptors_by_digest(response)
    assert set(found) == set(expected), describe(response)
    for digest, want in expected.items():
        got = found[digest]
        for key, value in want.items():
            assert got.get(key) == value, f"{digest} {key}: {got.get(key)!r} != {value!r}"
        if "annotations" not in want:
            assert not got.get("annotations"), f"unexpected annotations on {digest}: {got}"


async def test_referrers_filter_by_artifact_type(
    registry: httpx.AsyncClient,
    repo: str,
    referrers: tuple[Pushed, dict[str, dict[str, object]]],
) -> None:
    subject, expected = referrers

    response = await list_referrers(registry, repo, subject.digest, {"artifactType": SBOM})

    found = _descriptors_by_digest(response)
    assert response.headers.get("oci-filters-applied") == "artifactType", describe(response)
    assert set(found) == {d for d, e in expected.items() if e.get("artifactType") == SBOM}

    response = await list_referrers(
        registry, repo, subject.digest, {"artifactType": "application/vnd.example.none"}
    )
    assert _descriptors_by_digest(response) == {}
    assert response.headers.get("oci-filters-applied") == "artifactType", describe(response)


async def test_referrers_of_index_subject(registry: httpx.AsyncClient, repo: str) -> None:
    child = await push_image(registry, repo)
    index = await push_index(registry, repo, [child.descriptor], tag="multi")
    attestation = await push_artifact(
        registry, repo, subject=index.descriptor, artifact_type=SIGNATURE
    )

    found = _descriptors_by_digest(await list_referrers(registry, repo, index.digest))

    assert set(found) == {attestation.digest}
    assert found[attestation.digest]["mediaType"] == OCI_MANIFEST
    assert found[attestation.digest]["artifactType"] == SIGNATURE


async def test_referrers_empty_for_manifest_without_referrers(
    registry: httpx.AsyncClient, repo: str
) -> None:
    image = await push_image(registry, repo, tag="lonely")

    response = await list_referrers(registry, repo, image.digest)

    assert _descriptors_by_digest(response) == {}


async def test_referrers_empty_for_unknown_digest(registry: httpx.AsyncClient, repo: str) -> None:
    await push_image(registry, repo, tag="exists")

    response = await list_referrers(registry, repo, missing_digest())

    assert _descriptors_by_digest(response) == {}


async def test_referrers_of_missing_subject(registry: httpx.AsyncClient, repo: str) -> None:
    """Referrers pushed before their subject are listed for it."""
    absent = Descriptor(OCI_MANIFEST, missing_digest(), 4321)
    artifact = await push_artifact(registry, repo, subject=absent, artifact_type=SBOM)

    found = _descriptors_by_digest(await list_referrers(registry, repo, absent.digest))

    assert set(found) == {artifact.digest}


async def test_referrers_invalid_digest(registry: httpx.AsyncClient, repo: str) -> None:
    await push_image(registry, repo, tag="exists")

    response = await list_referrers(registry, repo, "sha256:not-a-hex-digest")

    assert_status(response, 400)


# --- catalog -------------------------------------------------------------------------------


async def _catalog_fixture(client: httpx.AsyncClient, count: int) -> tuple[str, list[str]]:
    """Create ``count`` repositories under a fresh prefix; return the prefix and their names.

    Listing with ``last=<prefix>`` starts right at them, however full a shared registry is.
    """
    prefix = f"catalog-{uuid.uuid4().hex[:12]}"
    names = [f"{prefix}/repo-{i}" for i in range(count)]
    for name in random.sample(names, count):
        await push_image(client, name, tag="latest")
    return prefix, sorted(names)


async def test_catalog_lists_repositories(registry: httpx.AsyncClient) -> None:
    prefix, names = await _catalog_fixture(registry, 3)

    response = await registry.get("/v2/_catalog", params={"n": "3", "last": prefix})

    assert_status(response, 200)
    assert response.json()["repositories"] == names


async def test_catalog_pagination(registry: httpx.AsyncClient) -> None:
    prefix, names = await _catalog_fixture(registry, 5)

    response = await registry.get("/v2/_catalog", params={"n": "2", "last": prefix})
    assert_status(response, 200)
    assert response.json()["repositories"] == names[:2]

    seen = list(names[:2])
    target = link_next(response)
    assert target is not None, f"more repositories remain but no Link: {describe(response)}"
    parts = urlsplit(target)
    assert parts.path == "/v2/_catalog", describe(response)
    query = parse_qs(parts.query)
    assert query.get("n") == ["2"], describe(response)
    assert query.get("last") == [names[1]], describe(response)

    while target is not None and len(seen) < len(names):
        response = await registry.get(target)
        assert_status(response, 200)
        page = response.json()["repositories"]
        assert 0 < len(page) <= 2, describe(response)
        seen.extend(page)
        target = link_next(response)
    assert seen[: len(names)] == names

    response = await registry.get("/v2/_catalog", params={"n": "0"})
    assert_status(response, 200)
    assert response.json()["repositories"] == []
    assert "link" not in response.headers, describe(response)


async def test_tags_list_of_repository_without_tags(registry: httpx.AsyncClient, repo: str) -> None:
    """A repository holding only untagged manifests exists: 200 with an empty list."""
    await push_image(registry, repo)

    response = await list_tags(registry, repo)

    assert_status(response, 200)
    assert response.json()["name"] == repo
    assert (response.json()["tags"] or []) == []


@pytest.mark.in_process_only
async def test_tags_list_n_beyond_the_page_size_limit(
    registry_factory: RegistryFactory,
) -> None:
    """``n`` above the registry's maximum page is refused outright (Moorage's documented limit,
    as distribution v3 does) rather than allocating an unbounded page; within it, pages work."""
    repo = unique_repo("page-limit")
    async with registry_factory(limits={"page_size_max": 4, "page_size_default": 4}) as client:
        await tag_everything(client, repo, TAGS)
        refused = await client.get(f"/v2/{repo}/tags/list?n=7")
        assert_error(refused, 400, "PAGINATION_NUMBER_INVALID")

        seen: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n=4"
        while url is not None and len(seen) <= len(TAGS):
            response = await client.get(url)
            assert_status(response, 200)
            seen.extend(response.json()["tags"])
            url = link_next(response)
        assert seen == sorted(TAGS)


@pytest.mark.in_process_only
async def test_tags_list_without_n_follows_links(registry_factory: RegistryFactory) -> None:
    repo = unique_repo("page-default")
    async with registry_factory(limits={"page_size_max": 4, "page_size_default": 3}) as client:
        await tag_everything(client, repo, TAGS)

        seen: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list"
        while url is not None and len(seen) <= len(TAGS):
            response = await client.get(url)
            assert_status(response, 200)
            seen.extend(response.json()["tags"])
            url = link_next(response)
        assert seen == sorted(TAGS)


async def test_referrers_with_index_referrer(registry: httpx.AsyncClient, repo: str) -> None:
    """An index can be a referrer too; without artifactType its descriptor has none."""
    subject = await push_image(registry, repo, tag="app")
    part = await push_artifact(registry, repo, subject=None, artifact_type=SIGNATURE)
    typed_body = encode(
        image_index([part.descriptor], artifact_type=SBOM, subject=subject.descriptor)
    )
    untyped_body = encode(
        image_index(
            [part.descriptor],
            subject=subject.descriptor,
            annotations={"org.example.note": "untyped index"},
        )
    )
    typed = await push_manifest_bytes(registry, repo, typed_body, media_type=OCI_INDEX)
    untyped = await push_manifest_bytes(registry, repo, untyped_body, media_type=OCI_INDEX)
    assert typed.headers.get("oci-subject") == subject.digest, describe(typed)
    assert untyped.headers.get("oci-subject") == subject.digest, describe(untyped)

    found = _descriptors_by_digest(await list_referrers(registry, repo, subject.digest))

    assert set(found) == {digest_of(typed_body), digest_of(untyped_body)}
    typed_entry = found[digest_of(typed_body)]
    assert typed_entry["mediaType"] == OCI_INDEX
    assert typed_entry["artifactType"] == SBOM
    assert typed_entry["size"] == len(typed_body)
    untyped_entry = found[digest_of(untyped_body)]
    assert untyped_entry["mediaType"] == OCI_INDEX
    assert "artifactType" not in untyped_entry, untyped_entry
    assert untyped_entry["annotations"] == {"org.example.note": "untyped index"}


async def test_referrers_are_scoped_to_the_repository(
    registry: httpx.AsyncClient, repo: str
) -> None:
    subject = await push_image(registry, repo, tag="app")
    other = unique_repo("other")
    await push_artifact(registry, other, subject=subject.descriptor)

    found = _descriptors_by_digest(await list_referrers(registry, repo, subject.digest))

    assert found == {}
