"""Repository name validation, unknown routes, health endpoints, and the API version header."""

from __future__ import annotations

import httpx
import pytest

from moorage.storage.filesystem import FilesystemBlobStore
from tests.api.support import ClientFactory, error_code


@pytest.mark.parametrize(
    "path",
    [
        "/v2/UPPER/tags/list",
        "/v2/a/%2e%2e/b/tags/list",
        "/v2/-lead/tags/list",
        "/v2/trail-/tags/list",
        "/v2/a//b/tags/list",
        "/v2/" + "a" * 256 + "/tags/list",
        "/v2/a b/tags/list",
    ],
)
async def test_invalid_names_get_400_name_invalid(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    assert error_code(response) == "NAME_INVALID"


async def test_name_of_255_characters_is_accepted(client: httpx.AsyncClient) -> None:
    name = "/".join(["a" * 127, "b" * 127])
    assert len(name) == 255
    response = await client.get(f"/v2/{name}/tags/list")
    assert response.status_code == 404
    assert error_code(response) == "NAME_UNKNOWN"


async def test_wrong_method_gets_405_with_envelope(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/a/tags/list")
    assert response.status_code == 405
    assert error_code(response) == "UNSUPPORTED"


async def test_unknown_route_gets_404_with_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/a/b/nothing-here")
    assert response.status_code == 404
    error_code(response)
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize("path", ["/_ping", "/v1/_ping"])
async def test_classic_ping_endpoints(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {}


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    for dependency in ("database", "storage"):
        assert body["checks"][dependency]["status"] == "ok"
        assert body["checks"][dependency]["duration_ms"] >= 0


async def test_readiness_names_the_failing_dependency(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(_: object) -> None:
        raise OSError("disk at /secret/path is gone")

    async with make_client() as client:
        monkeypatch.setattr(FilesystemBlobStore, "check", unreachable)
        response = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200  # liveness checks nothing
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["storage"] == {"status": "failing", "error": "OSError"}
    assert "secret" not in response.text


async def test_v2_root_answers_with_api_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_conflicting_content_length_and_transfer_encoding_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v2/a/blobs/uploads/",
        content=b"0\r\n\r\n",
        headers={"Transfer-Encoding": "chunked", "Content-Length": "5"},
    )
    assert response.status_code == 400
    error_code(response)
