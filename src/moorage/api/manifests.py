"""Manifest routes: GET / HEAD, PUT (by tag or digest, with ``?tag=``), DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from moorage.api.auth import identity_of
from moorage.api.body import read_limited
from moorage.api.context import Registry, point_read
from moorage.threads import in_thread


async def get_manifest(registry: Registry, request: Request, name: str, reference: str) -> Response:
    record = await point_read(registry, registry.manifests.get, name, reference)
    headers = {
        "Docker-Content-Digest": record.digest,
        "ETag": f'"{record.digest}"',
        "Content-Length": str(record.size),
    }
    body = b"" if request.method == "HEAD" else record.payload
    if registry.manifest_pulled is not None and request.method == "GET":
        await in_thread(registry.manifest_pulled, name, reference, record.digest)
    response = Response(body, 200, headers, record.media_type)
    return response


async def put_manifest(registry: Registry, request: Request, name: str, reference: str) -> Response:
    payload = await read_limited(request, registry.manifest_max_bytes)
    gate = registry.gate
    immutable = gate.enabled and not gate.may_overwrite_tag(identity_of(request), name)
    record = await in_thread(
        registry.manifests.put,
        name,
        reference,
        payload,
        request.headers.get("content-type"),
        request.query_params.getlist("tag"),
        immutable,
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{record.digest}",
        "Docker-Content-Digest": record.digest,
    }
    if record.subject:
        headers["OCI-Subject"] = record.subject
    return Response(b"", 201, headers)


async def delete_manifest(
    registry: Registry, request: Request, name: str, reference: str
) -> Response:
    await in_thread(registry.manifests.delete, name, reference)
    return Response(b"", 202)
