"""Content discovery routes: tags list, catalog, referrers."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from moorage.api.auth import identity_of
from moorage.api.context import Registry
from moorage.api.responses import json_response
from moorage.oci import mediatypes
from moorage.oci.digest import Digest
from moorage.services.pagination import Page
from moorage.threads import in_thread


def _link(path: str, params: dict[str, str]) -> dict[str, str]:
    return {"Link": f'<{path}?{urlencode(params)}>; rel="next"'}


def _next_link(path: str, page: Page, n: int) -> dict[str, str]:
    if page.next_last is None:
        return {}
    return _link(path, {"n": str(n), "last": page.next_last})


async def list_tags(registry: Registry, request: Request, name: str, _: str) -> Response:
    query = request.query_params
    n = registry.listing.limits.resolve(query.get("n"))
    page = await in_thread(registry.listing.tags, name, n, query.get("last"))
    return json_response(
        {"name": name, "tags": page.items}, headers=_next_link(f"/v2/{name}/tags/list", page, n)
    )


async def catalog(registry: Registry, request: Request) -> Response:
    query = request.query_params
    gate = registry.gate
    visible = gate.pull_filter(identity_of(request)) if gate.enabled else None
    n = registry.listing.limits.resolve(query.get("n"))
    page = await in_thread(registry.listing.catalog, n, query.get("last"), visible)
    return json_response({"repositories": page.items}, headers=_next_link("/v2/_catalog", page, n))


async def referrers(registry: Registry, request: Request, name: str, reference: str) -> Response:
    subject = Digest.parse(reference)
    query = request.query_params
    artifact_type = query.get("artifactType") or None
    n = registry.listing.limits.resolve(query.get("n"))
    page = await in_thread(
        registry.listing.referrers, name, subject, artifact_type, n, query.get("last")
    )
    manifests = []
    for referrer in page.referrers:
        descriptor: dict[str, object] = {
            "mediaType": referrer.media_type,
            "digest": referrer.digest,
            "size": referrer.size,
        }
        if referrer.artifact_type:
            descriptor["artifactType"] = referrer.artifact_type
        if referrer.annotations:
            descriptor["annotations"] = referrer.annotations
        manifests.append(descriptor)
    headers: dict[str, str] = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if page.next_last is not None:
        params = {"n": str(n), "last": page.next_last}
        if artifact_type is not None:
            params["artifactType"] = artifact_type
        headers.update(_link(f"/v2/{name}/referrers/{subject}", params))
    body = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
    return json_response(body, headers=headers, media_type=mediatypes.OCI_INDEX)
