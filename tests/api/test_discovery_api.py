"""Tags list, catalog and referrers: ordering, pagination, and bounds on n."""

from __future__ import annotations

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


async def tag_all(client: httpx.AsyncClient, repo: str, tags: list[str]) -> None:
    config = await push_blob(client, repo, b"{}")
    manifest = image_manifest(config, 2, [])
    query = "&".join(f"tag={t}" for t in tags)
    response = await client.put(
        f"/v2/{repo}/manifests/{digest_of(manifest)}?{query}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201


async def test_tags_are_listed_in_lexical_order_with_pagination(client: httpx.AsyncClient) -> None:
    tags = ["v10", "v2", "B", "a", "latest", "v1", "_x"]
    await tag_all(client, "d/tags", tags)
    full = await client.get("/v2/d/tags/tags/list")
    assert full.json() == {"name": "d/tags", "tags": sorted(tags)}
    assert "link" not in full.headers
    collected: list[str] = []
    url = "/v2/d/tags/tags/list?n=3"
    while url:
        page = await client.get(url)
        assert page.status_code == 200
        collected += page.json()["tags"]
        link = page.headers.get("link")
        url = link[1 : link.index(">")] if link else ""
        if link:
            assert link.endswith('>; rel="next"')
    assert collected == sorted(tags)
    after = await client.get("/v2/d/tags/tags/list?last=latest")
    assert after.json()["tags"] == [t for t in sorted(tags) if t > "latest"]
    assert (await client.get("/v2/d/tags/tags/list?n=0")).json()["tags"] == []


@pytest.mark.parametrize(
    # Unicode digits pass str.isdigit() but are no number on the wire (they used to give a 500).
    "n",
    ["-1", "1001", "abc", "99999999999999999999", "1e3", "\u00b2", "\u0663", "\uff11", " 1", "1_0"],
)
async def test_bad_n_is_refused(client: httpx.AsyncClient, n: str) -> None:
    await tag_all(client, "d/n", ["a"])
    for path in ("/v2/d/n/tags/list", "/v2/_catalog", f"/v2/d/n/referrers/{digest_of(b'x')}"):
        response = await client.get(f"{path}?n={n}")
        assert response.status_code == 400, path
        assert error_code(response) == "PAGINATION_NUMBER_INVALID"


async def test_page_maximum_is_configurable(make_client: ClientFactory) -> None:
    async with make_client(limits={"page_size_max": 2, "page_size_default": 2}) as client:
        await tag_all(client, "d/max", ["a", "b", "c"])
        assert (await client.get("/v2/d/max/tags/list?n=3")).status_code == 400
        first = await client.get("/v2/d/max/tags/list")
        assert first.json()["tags"] == ["a", "b"]
        assert first.headers["link"] == '</v2/d/max/tags/list?n=2&last=b>; rel="next"'


async def test_tags_of_unknown_repository_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/d/none/tags/list")
    assert response.status_code == 404
    assert error_code(response) == "NAME_UNKNOWN"


async def test_catalog_pagination(client: httpx.AsyncClient) -> None:
    names = ["c/b", "c/a", "a", "c/a/deeper", "b-b"]
    for name in names:
        await push_image(client, name)
    everything = await client.get("/v2/_catalog")
    assert everything.json()["repositories"] == sorted(names)
    first = await client.get("/v2/_catalog?n=2")
    assert first.json()["repositories"] == sorted(names)[:2]
    link = first.headers["link"]
    second = await client.get(link[1 : link.index(">")])
    assert second.json()["repositories"] == sorted(names)[2:4]


async def test_referrers_with_filter_and_pagination(client: httpx.AsyncClient) -> None:
    subject, _ = await push_image(client, "d/ref")
    config = await push_blob(client, "d/ref", b"{}")
    pushed: dict[str, str] = {}
    for i, kind in enumerate(
        [
            "application/vnd.example.sbom",
            "application/vnd.example.sig",
            "application/vnd.example.sbom",
        ]
    ):
        manifest = image_manifest(
            config,
            2,
            [],
            artifactType=kind,
            subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
            annotations={"n": str(i)},
        )
        digest = digest_of(manifest)
        put = await client.put(
            f"/v2/d/ref/manifests/{digest}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201
        pushed[digest] = kind
    response = await client.get(f"/v2/d/ref/referrers/{subject}")
    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert {m["digest"]: m["artifactType"] for m in index["manifests"]} == pushed
    assert all(
        m["mediaType"] == OCI_MANIFEST and m["size"] > 0 and "n" in m["annotations"]
        for m in index["manifests"]
    )
    assert "oci-filters-applied" not in response.headers

    filtered = await client.get(
        f"/v2/d/ref/referrers/{subject}?artifactType=application/vnd.example.sbom"
    )
    assert filtered.headers["oci-filters-applied"] == "artifactType"
    assert len(filtered.json()["manifests"]) == 2

    page = await client.get(f"/v2/d/ref/referrers/{subject}?n=2")
    assert len(page.json()["manifests"]) == 2
    link = page.headers["link"]
    rest = await client.get(link[1 : link.index(">")])
    assert len(rest.json()["manifests"]) == 1


async def test_referrers_of_unknown_subject_is_an_empty_index(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/d/nobody/referrers/{digest_of(b'nothing')}")
    assert response.status_code == 200
    assert response.json()["manifests"] == []


async def test_referrers_with_bad_digest_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/d/ref/referrers/sha256:nothex")
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


async def test_error_bodies_never_echo_unbounded_input(client: httpx.AsyncClient) -> None:
    digest = "sha256:" + "A" * 50_000
    response = await client.get(f"/v2/d/echo/blobs/{digest}")
    assert response.status_code == 400
    assert len(response.content) < 2000
