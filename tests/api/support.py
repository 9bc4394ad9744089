"""Helpers for the in-process API tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    response = await client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data)
    assert response.status_code == 201, response.text
    return digest


def image_manifest(
    config: str, config_size: int, layers: list[tuple[str, int]], **extra: Any
) -> bytes:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
            for d, s in layers
        ],
    }
    body.update(extra)
    return json.dumps(body).encode()


async def push_image(
    client: httpx.AsyncClient,
    repo: str,
    tag: str | None = "latest",
    seed: bytes = b"x",
    **extra: Any,
) -> tuple[str, bytes]:
    """Push a config + one layer + manifest; return the manifest digest and bytes."""
    config = b'{"architecture":"amd64","os":"linux","seed":"' + seed.hex().encode() + b'"}'
    layer = b"layer-" + seed
    config_digest = await push_blob(client, repo, config)
    layer_digest = await push_blob(client, repo, layer)
    manifest = image_manifest(config_digest, len(config), [(layer_digest, len(layer))], **extra)
    digest = digest_of(manifest)
    response = await client.put(
        f"/v2/{repo}/manifests/{tag or digest}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest, manifest


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"errors"}
    entry = body["errors"][0]
    assert {"code", "message", "detail"} <= set(entry)
    return str(entry["code"])


def registry_headers(response: httpx.Response) -> httpx.Headers:
    """The registry's own response headers: those of the 307 when the blob GET was redirected
    to the object store (whose answer carries the bytes but not the registry's headers)."""
    for hop in response.history:
        if hop.status_code == 307:
            return hop.headers
    return response.headers


def served_by_object_store(response: httpx.Response, endpoint: str) -> bool:
    return any(hop.status_code == 307 for hop in response.history) and str(response.url).startswith(
        endpoint
    )
