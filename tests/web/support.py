"""Helpers for the UI page tests: a registry with a policy, images to look at, and browser-like
clients that sign in through the form."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from tests.api.support import OCI_MANIFEST, digest_of, push_blob
from tests.web.html import Element, parse

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SBOM_TYPE = "application/spdx+json"

POLICY = """
admins: [root]
groups:
  writers: [wendy]
rules:
  - repositories: ["public/*"]
    anonymous: true
    actions: [pull]
  - repositories: ["team/*"]
    users: [rita]
    actions: [pull]
  - repositories: ["team/*"]
    groups: [writers]
    actions: [pull, push]
"""
USERS = ("root", "rita", "wendy")

# Text an attacker controls in an image, meant to run if a page ever failed to escape it.
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"\'&'


def password(user: str) -> str:
    return f"{user}-pw-123"


def page(response: httpx.Response) -> Element:
    assert response.headers["content-type"].startswith("text/html"), response.headers
    return parse(response.text)


async def push_config_image(
    client: httpx.AsyncClient,
    repository: str,
    reference: str,
    config: dict[str, Any],
    layers: list[bytes],
    **extra: Any,
) -> str:
    """Push an image with this config and these layers; return the manifest digest."""
    config_bytes = json.dumps(config).encode()
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": extra.pop("config_media_type", OCI_CONFIG),
            "digest": await push_blob(client, repository, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": await push_blob(client, repository, layer),
                "size": len(layer),
            }
            for layer in layers
        ],
        **extra,
    }
    payload = json.dumps(body).encode()
    response = await client.put(
        f"/v2/{repository}/manifests/{reference}",
        content=payload,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest_of(payload)


async def push_index(
    client: httpx.AsyncClient, repository: str, tag: str, children: list[tuple[str, str, int]]
) -> str:
    """An index of (digest, architecture, size) images, tagged ``tag``."""
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
            for digest, arch, size in children
        ],
    }
    payload = json.dumps(body).encode()
    response = await client.put(
        f"/v2/{repository}/manifests/{tag}", content=payload, headers={"Content-Type": OCI_INDEX}
    )
    assert response.status_code == 201, response.text
    return digest_of(payload)


async def manifest_size(client: httpx.AsyncClient, repository: str, digest: str) -> int:
    response = await client.get(
        f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status_code == 200
    return len(response.content)


def csrf_of(document: Element) -> str:
    value = document.find("input", name="csrf").attrs["value"]
    assert value
    return value


async def sign_in(client: httpx.AsyncClient, user: str, secret: str) -> httpx.Response:
    form = page(await client.get("/ui/sign-in"))
    return await client.post(
        "/ui/sign-in",
        data={"csrf": csrf_of(form), "username": user, "password": secret, "next": "/ui/"},
    )


@asynccontextmanager
async def browser(
    app: Starlette, user: str | None = None, base_url: str = "http://registry"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies like a browser, signed in as ``user`` (None: anonymous)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url
    ) as client:
        if user is not None:
            response = await sign_in(client, user, password(user))
            assert response.status_code == 303, response.text
        yield client


async def push_referrer(
    api: httpx.AsyncClient, repository: str, subject: dict[str, Any], kind: str, content: bytes
) -> str:
    """An artifact of type ``kind`` whose subject is ``subject``, pushed by digest."""
    empty = await push_blob(api, repository, b"{}")
    layer = await push_blob(api, repository, content)
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": kind,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [
            {"mediaType": "application/octet-stream", "digest": layer, "size": len(content)}
        ],
        "subject": subject,
    }
    payload = json.dumps(body).encode()
    digest = digest_of(payload)
    response = await api.put(
        f"/v2/{repository}/manifests/{digest}",
        content=payload,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest
