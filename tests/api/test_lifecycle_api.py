"""Quotas on manifest PUT and ``DELETE /api/v1/repositories/<name>`` over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from moorage.auth.htpasswd import add_user
from tests.api.support import (
    OCI_MANIFEST,
    ClientFactory,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)

POLICY = """
admins: [root]
rules:
  - repositories: ["team/*"]
    users: [writer]
    actions: [pull, push, delete]
"""


async def test_a_push_over_quota_is_denied_and_leaves_nothing(make_client: ClientFactory) -> None:
    quotas = [{"repositories": ["team/*"], "max_bytes": "2KiB"}]
    async with make_client(quotas=quotas) as client:
        await push_image(client, "team/app", "v1")
        layer = b"x" * 4096
        config = b'{"os":"linux"}'
        manifest = image_manifest(
            await push_blob(client, "team/app", config),
            len(config),
            [(await push_blob(client, "team/app", layer), len(layer))],
        )
        response = await client.put(
            "/v2/team/app/manifests/v2", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status_code == 403
        assert error_code(response) == "DENIED"
        message = response.json()["errors"][0]["message"]
        assert "'team/*'" in message and "max_bytes 2.0 KiB (2048 bytes)" in message
        assert (await client.get("/v2/team/app/tags/list")).json()["tags"] == ["v1"]
        by_digest = await client.get(f"/v2/team/app/manifests/{digest_of(manifest)}")
        assert by_digest.status_code == 404
        # Other repositories are not limited.
        await push_image(client, "elsewhere/app", "v1", seed=b"big" * 2000)


async def seed_shared(client: httpx.AsyncClient, auth: tuple[str, str] | None = None) -> str:
    """team/gone and team/kept hold the same image; returns its manifest digest."""
    if auth is not None:
        client.auth = auth
    digest, _ = await push_image(client, "team/gone", "v1")
    await push_image(client, "team/gone", "v2", seed=b"second")
    await push_image(client, "team/kept", "v1")
    return digest


async def assert_gone_and_kept(client: httpx.AsyncClient, digest: str) -> None:
    tags = await client.get("/v2/team/gone/tags/list")
    assert tags.status_code == 404 and error_code(tags) == "NAME_UNKNOWN"
    catalog = await client.get("/v2/_catalog")
    assert catalog.json()["repositories"] == ["team/kept"]
    assert (await client.get(f"/v2/team/gone/manifests/{digest}")).status_code == 404
    kept = await client.get(f"/v2/team/kept/manifests/{digest}")
    assert kept.status_code == 200
    for layer in [kept.json()["config"], *kept.json()["layers"]]:
        blob = await client.get(f"/v2/team/kept/blobs/{layer['digest']}")
        assert blob.status_code == 200 and digest_of(blob.content) == layer["digest"]


async def test_delete_a_repository(client: httpx.AsyncClient) -> None:
    digest = await seed_shared(client)
    response = await client.delete("/api/v1/repositories/team/gone")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "repository": "team/gone",
        "tags": 2,
        "manifests": 2,
        "linked_blobs": 4,
    }
    await assert_gone_and_kept(client, digest)
    again = await client.delete("/api/v1/repositories/team/gone")
    assert again.status_code == 404 and error_code(again) == "NAME_UNKNOWN"


async def test_repository_delete_route_edges(make_client: ClientFactory) -> None:
    async with make_client() as client:
        get = await client.get("/api/v1/repositories/team/gone")
        assert get.status_code == 405 and get.headers["allow"] == "DELETE"
        bad = await client.delete("/api/v1/repositories/Team/Gone")
        assert bad.status_code == 400 and error_code(bad) == "NAME_INVALID"
        assert (await client.delete("/api/v1/other")).status_code == 404
    async with make_client(delete_enabled=False) as client:
        await push_image(client, "team/gone", "v1")
        refused = await client.delete("/api/v1/repositories/team/gone")
        assert refused.status_code == 405 and error_code(refused) == "UNSUPPORTED"
        assert (await client.get("/v2/team/gone/tags/list")).status_code == 200


@pytest.fixture
def auth(tmp_path: Path) -> dict[str, Path]:
    htpasswd = tmp_path / "htpasswd"
    for user in ("root", "writer"):
        add_user(htpasswd, user, f"{user}-pw")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"htpasswd": htpasswd, "policy_file": policy}


async def test_only_admins_delete_repositories(
    make_client: ClientFactory, auth: dict[str, Path]
) -> None:
    root, writer = ("root", "root-pw"), ("writer", "writer-pw")
    async with make_client(auth=auth) as client:
        digest = await seed_shared(client, root)
    async with make_client(auth=auth) as client:
        url = "/api/v1/repositories/team/gone"
        anonymous = await client.delete(url)
        assert anonymous.status_code == 401 and error_code(anonymous) == "UNAUTHORIZED"
        assert 'scope="repository:team/gone:admin"' in anonymous.headers["www-authenticate"]
        # writer may pull, push and delete manifests in team/*, but is no admin.
        refused = await client.delete(url, auth=writer)
        assert refused.status_code == 403 and error_code(refused) == "DENIED"
        scope = {"service": "moorage", "scope": "repository:team/gone:admin"}
        token = (await client.get("/token", params=scope, auth=writer)).json()["token"]
        refused = await client.delete(url, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403
        assert (await client.get("/v2/team/gone/tags/list", auth=root)).status_code == 200
        token = (await client.get("/token", params=scope, auth=root)).json()["token"]
        response = await client.delete(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        client.auth = root
        await assert_gone_and_kept(client, digest)
