"""A small OCI distribution client for the conformance suite.

Everything here speaks plain HTTP through an ``httpx.AsyncClient`` whose ``base_url`` is the
registry, so the same helpers drive the in-process Moorage app and any registry reachable by
URL. Helpers that *set up* state (pushing blobs, manifests) assert that the registry accepted
the request, so a test fails at the step that broke rather than later on a confusing read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCTET_STREAM = "application/octet-stream"

EMPTY_JSON = b"{}"

#: What a modern client sends when it fetches a manifest.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

QueryParams = dict[str, str] | tuple[tuple[str, str], ...]

_ERROR_CODE = re.compile(r"^[A-Z_]+$")
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


# --- digests and names ---------------------------------------------------------------------


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest (``algorithm:hex``) of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def random_bytes(size: int) -> bytes:
    """Incompressible, unique content, so no two tests ever share a blob by accident."""
    return os.urandom(size)


def unique_repo(label: str = "repo", prefix: str = "conformance") -> str:
    """A repository name no other test (or earlier run against the same registry) uses."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:48] or "repo"
    return f"{prefix}/{slug}-{uuid.uuid4().hex[:12]}"


def missing_digest() -> str:
    """A well-formed digest of content that no registry holds."""
    return digest_of(b"never pushed " + uuid.uuid4().bytes)


# --- describing responses ------------------------------------------------------------------

_SHOWN_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "range",
    "location",
    "docker-content-digest",
    "docker-distribution-api-version",
    "link",
    "oci-subject",
    "oci-filters-applied",
    "oci-tag",
)


def describe(response: httpx.Response) -> str:
    """One readable line per request for assertion messages: request, status, headers, body."""
    request = response.request
    headers = {name: response.headers[name] for name in _SHOWN_HEADERS if name in response.headers}
    try:
        body = response.content[:400]
    except httpx.ResponseNotRead:  # pragma: no cover - we always read responses
        body = b"<not read>"
    return (
        f"{request.method} {request.url} -> {response.status_code} headers={headers} body={body!r}"
    )


def assert_status(response: httpx.Response, *expected: int) -> None:
    assert response.status_code in expected, f"expected {expected}: {describe(response)}"


def assert_error(response: httpx.Response, status: int, *codes: str) -> list[dict[str, Any]]:
    """Check ``status`` and the spec's error envelope, with one of ``codes`` (if any are given)
    among the errors.

    The envelope is ``{"errors": [{"code", "message", "detail"}, ...]}``: ``code`` is required
    and made of uppercase letters and underscores; ``message`` (a string) and ``detail`` (any
    JSON) are optional per the spec, so they are type-checked only when present.
    """
    assert response.status_code == status, f"expected {status} {codes}: {describe(response)}"
    if response.request.method == "HEAD":
        return []  # a HEAD response has no body to carry the envelope
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {describe(response)}") from None
    assert isinstance(body, dict), f"error body is not an object: {describe(response)}"
    errors = body.get("errors")
    assert isinstance(errors, list), f"no errors list: {describe(response)}"
    assert errors, f"empty errors list: {describe(response)}"
    for entry in errors:
        assert isinstance(entry, dict), f"error entry is not an object: {describe(response)}"
        code = entry.get("code")
        assert isinstance(code, str), f"error code missing: {describe(response)}"
        assert _ERROR_CODE.match(code), f"malformed error code {code!r}: {describe(response)}"
        if "message" in entry:
            assert isinstance(entry["message"], str), f"message not a string: {describe(response)}"
    found = [entry["code"] for entry in errors]
    assert not codes or any(code in codes for code in found), (
        f"expected error code in {codes}, got {found}: {describe(response)}"
    )
    return errors


def content_digest(response: httpx.Response) -> str | None:
    """``Docker-Content-Digest``, from the redirect if the registry sent the GET elsewhere."""
    header: str | None = response.headers.get("docker-content-digest")
    if header is None and response.history:
        header = response.history[0].headers.get("docker-content-digest")
    return header


def assert_content_digest(response: httpx.Response, body: bytes, digest: str) -> None:
    """``Docker-Content-Digest`` is present and names ``body``.

    It must equal ``digest`` when it uses the same algorithm; a registry MAY answer with its
    canonical digest in another algorithm (sha256 for a sha512 upload), which must then still
    be the digest of exactly these bytes. A blob GET the registry redirected (to pre-signed
    object storage, which knows nothing of digests) carries it on the redirect.
    """
    header = content_digest(response)
    assert header, f"no Docker-Content-Digest: {describe(response)}"
    algorithm = header.split(":", 1)[0]
    if algorithm == digest.split(":", 1)[0]:
        assert header == digest, f"expected Docker-Content-Digest {digest}: {describe(response)}"
    else:
        assert algorithm in hashlib.algorithms_available, describe(response)
        assert header == digest_of(body, algorithm), (
            f"Docker-Content-Digest does not match the content: {describe(response)}"
        )


def link_next(response: httpx.Response) -> str | None:
    """The target of an RFC 8288 ``Link: <...>; rel="next"`` header, if there is one."""
    header = response.headers.get("link")
    if header is None:
        return None
    match = _LINK_NEXT.search(header)
    assert match, f"Link header without rel=next: {describe(response)}"
    return match.group(1)


def with_query(location: str, params: QueryParams) -> httpx.URL:
    """``location`` with ``params`` added to the query it already has.

    An upload ``Location`` MAY carry critical query parameters of its own; passing ``params=``
    to httpx would replace them, so they are merged here instead.
    """
    return httpx.URL(location).copy_merge_params(params)


def upload_location(response: httpx.Response) -> str:
    """The ``Location`` of an upload session (or blob), which the next request must use."""
    location: str | None = response.headers.get("location")
    assert location, f"no Location header: {describe(response)}"
    return location


# --- blobs ---------------------------------------------------------------------------------


async def start_upload(
    client: httpx.AsyncClient, repo: str, params: QueryParams | None = None
) -> httpx.Response:
    """``POST /v2/<repo>/blobs/uploads/`` with an empty body (``Content-Length: 0``)."""
    return await client.post(f"/v2/{repo}/blobs/uploads/", params=params, content=b"")


async def open_session(
    client: httpx.AsyncClient, repo: str, params: QueryParams | None = None
) -> str:
    """Start an upload session and return its location, asserting ``202 Accepted``."""
    response = await start_upload(client, repo, params)
    assert_status(response, 202)
    return upload_location(response)


async def patch_chunk(
    client: httpx.AsyncClient, location: str, data: bytes, start: int | None = None
) -> httpx.Response:
    """``PATCH`` one chunk; with ``start``, send ``Content-Range: start-end`` (inclusive)."""
    headers = {"Content-Type": OCTET_STREAM}
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return await client.patch(location, content=data, headers=headers)


async def close_session(
    client: httpx.AsyncClient,
    location: str,
    digest: str,
    data: bytes = b"",
    start: int | None = None,
) -> httpx.Response:
    """Finish an upload: ``PUT <location>?digest=<digest>``, optionally with a final chunk."""
    headers = {"Content-Type": OCTET_STREAM}
    if data and start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return await client.put(with_query(location, {"digest": digest}), content=data, headers=headers)


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    """Upload ``data`` the most portable way (POST, then PUT with the body); return its digest."""
    digest = digest_of(data)
    location = await open_session(client, repo)
    response = await close_session(client, location, digest, data)
    assert_status(response, 201)
    return digest


# --- manifests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] | None = None

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, digest_of(data), len(data))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Pushed:
    """A manifest (image manifest or index) the registry accepted."""

    repo: str
    body: bytes
    media_type: str
    response: httpx.Response
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = field(default_factory=tuple)

    @property
    def digest(self) -> str:
        return digest_of(self.body)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.body))


def encode(document: Mapping[str, Any]) -> bytes:
    """Serialise a manifest the way no registry would re-serialise it (3-space indent and a
    trailing newline), so any registry that rewrites the bytes is caught."""
    return json.dumps(document, indent=3).encode() + b"\n"


def image_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    *,
    artifact_type: str | None = None,
    subject: Descriptor | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    document["config"] = config.to_json()
    document["layers"] = [layer.to_json() for layer in layers]
    if subject is not None:
        document["subject"] = subject.to_json()
    if annotations is not None:
        document["annotations"] = dict(annotations)
    return document


def image_index(
    manifests: Sequence[Descriptor],
    *,
    artifact_type: str | None = None,
    subject: Descriptor | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    document["manifests"] = [m.to_json() for m in manifests]
    if subject is not None:
        document["subject"] = subject.to_json()
    if annotations is not None:
        document["annotations"] = dict(annotations)
    return document


async def put_manifest(
    client: httpx.AsyncClient,
    repo: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
    params: QueryParams | None = None,
) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
        params=params,
    )


async def get_manifest(
    client: httpx.AsyncClient, repo: str, reference: str, method: str = "GET"
) -> httpx.Response:
    return await client.request(
        method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
    )


async def push_manifest_bytes(
    client: httpx.AsyncClient,
    repo: str,
    body: bytes,
    *,
    tag: str | None = None,
    media_type: str = OCI_MANIFEST,
) -> httpx.Response:
    """PUT ``body`` by tag (or by its own digest without a tag), asserting ``201 Created``."""
    response = await put_manifest(client, repo, tag or digest_of(body), body, media_type)
    assert_status(response, 201)
    return response


async def push_image(
    client: httpx.AsyncClient,
    repo: str,
    *,
    tag: str | None = None,
    layer_count: int = 1,
    layer_size: int = 1024,
    config_media_type: str = OCI_CONFIG,
    config_data: bytes | None = None,
    artifact_type: str | None = None,
    layer_media_type: str = OCI_LAYER,
    subject: Descriptor | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Pushed:
    """Push the blobs of a small image (unique content every call), then its manifest."""
    layers_data = [random_bytes(layer_size) for _ in range(layer_count)]
    if config_data is None:
        config_data = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [digest_of(d) for d in layers_data]},
                "config": {"Labels": {"nonce": uuid.uuid4().hex}},
            }
        ).encode()
    config = Descriptor.of(config_media_type, config_data)
    await push_blob(client, repo, config_data)
    layers = []
    for data in layers_data:
        await push_blob(client, repo, data)
        layers.append(Descriptor.of(layer_media_type, data))
    body = encode(
        image_manifest(
            config,
            layers,
            artifact_type=artifact_type,
            subject=subject,
            annotations=annotations,
        )
    )
    response = await push_manifest_bytes(client, repo, body, tag=tag)
    return Pushed(repo, body, OCI_MANIFEST, response, config, tuple(layers))


async def push_artifact(
    client: httpx.AsyncClient,
    repo: str,
    *,
    subject: Descriptor | None,
    artifact_type: str | None = "application/vnd.example.sbom.v1",
    config_media_type: str = OCI_EMPTY,
    annotations: Mapping[str, str] | None = None,
    tag: str | None = None,
) -> Pushed:
    """An OCI 1.1 artifact: empty (``{}``) or custom config, one small layer, a subject."""
    config_data = EMPTY_JSON if config_media_type == OCI_EMPTY else b'{"kind":"example"}'
    return await push_image(
        client,
        repo,
        tag=tag,
        layer_size=64,
        config_media_type=config_media_type,
        config_data=config_data,
        artifact_type=artifact_type,
        layer_media_type="application/vnd.example.payload.v1",
        subject=subject,
        annotations=annotations,
    )


async def push_index(
    client: httpx.AsyncClient,
    repo: str,
    manifests: Sequence[Descriptor],
    *,
    tag: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Pushed:
    body = encode(image_index(manifests, annotations=annotations))
    response = await push_manifest_bytes(client, repo, body, tag=tag, media_type=OCI_INDEX)
    return Pushed(repo, body, OCI_INDEX, response)


async def list_tags(
    client: httpx.AsyncClient, repo: str, params: QueryParams | None = None
) -> httpx.Response:
    return await client.get(f"/v2/{repo}/tags/list", params=params)


async def list_referrers(
    client: httpx.AsyncClient, repo: str, digest: str, params: QueryParams | None = None
) -> httpx.Response:
    return await client.get(f"/v2/{repo}/referrers/{digest}", params=params)
