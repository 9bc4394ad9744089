"""The route tables: /v2 (the OCI API) and /api/v1 (Moorage's own). Repository names contain
slashes, so one pattern per endpoint is matched against the path after the prefix; the name is
validated once here, at the edge."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from moorage.api import blobs, discovery, manifests, repositories, uploads
from moorage.api.context import Registry
from moorage.auth.access import ADMIN, DELETE, PULL, PUSH
from moorage.errors import ErrorCode, RegistryError
from moorage.oci.names import parse_name

Handler = Callable[[Registry, Request, str, str], Awaitable[Response]]
StartHandler = Callable[[Registry, Request, str], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    # What logs and metrics name the route by: bounded, unlike the path or the repository.
    template: str
    pattern: re.Pattern[str]
    methods: dict[str, Handler]
    # The repository action each method needs: the one table every authorization decision on a
    # /v2 or /api/v1 route comes from. Uploads need push throughout (status and cancel included).
    actions: dict[str, str]


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    template: str
    handler: Handler
    name: str
    reference: str
    action: str


def _start_upload(registry: Registry, request: Request, name: str, _: str) -> Awaitable[Response]:
    return uploads.start_upload(registry, request, name)


UPLOAD_START = "/v2/{name}/blobs/uploads/"
UPLOAD_SESSION = "/v2/{name}/blobs/uploads/{uuid}"
BLOB = "/v2/{name}/blobs/{digest}"
MANIFEST = "/v2/{name}/manifests/{reference}"

_NAME = r"(?P<name>.+?)"
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        UPLOAD_START,
        re.compile(rf"^{_NAME}/blobs/uploads/?(?P<ref>)$"),
        {"POST": _start_upload},
        {"POST": PUSH},
    ),
    Endpoint(
        UPLOAD_SESSION,
        re.compile(rf"^{_NAME}/blobs/uploads/(?P<ref>[^/]+)$"),
        {
            "GET": uploads.upload_status,
            "PATCH": uploads.patch_upload,
            "PUT": uploads.finish_upload,
            "DELETE": uploads.cancel_upload,
        },
        {"GET": PUSH, "PATCH": PUSH, "PUT": PUSH, "DELETE": PUSH},
    ),
    Endpoint(
        BLOB,
        re.compile(rf"^{_NAME}/blobs/(?P<ref>[^/]+)$"),
        {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob},
        {"GET": PULL, "HEAD": PULL, "DELETE": DELETE},
    ),
    Endpoint(
        MANIFEST,
        re.compile(rf"^{_NAME}/manifests/(?P<ref>[^/]+)$"),
        {
            "GET": manifests.get_manifest,
            "HEAD": manifests.get_manifest,
            "PUT": manifests.put_manifest,
            "DELETE": manifests.delete_manifest,
        },
        {"GET": PULL, "HEAD": PULL, "PUT": PUSH, "DELETE": DELETE},
    ),
    Endpoint(
        "/v2/{name}/tags/list",
        re.compile(rf"^{_NAME}/tags/list(?P<ref>)$"),
        {"GET": discovery.list_tags},
        {"GET": PULL},
    ),
    Endpoint(
        "/v2/{name}/referrers/{digest}",
        re.compile(rf"^{_NAME}/referrers/(?P<ref>[^/]+)$"),
        {"GET": discovery.referrers},
        {"GET": PULL},
    ),
)


# /api/v1: Moorage's management routes. Deleting a repository is for admins only.
API_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/api/v1/repositories/{name}",
        re.compile(rf"^repositories/{_NAME}(?P<ref>)$"),
        {"DELETE": repositories.delete_repository},
        {"DELETE": ADMIN},
    ),
)


def resolve(path: str, method: str, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> ResolvedRoute:
    """Find the handler for ``/v2/<path>`` (or ``/api/v1/<path>`` with ``API_ENDPOINTS``);
    404 for an unknown route, 405 for a wrong method."""
    for endpoint in endpoints:
        match = endpoint.pattern.match(path)
        if match is None:
            continue
        handler = endpoint.methods.get(method)
        if handler is None:
            raise RegistryError(
                ErrorCode.UNSUPPORTED,
                f"{method} is not allowed here",
                status=405,
                headers={"Allow": ", ".join(endpoint.methods)},
            )
        return ResolvedRoute(
            endpoint.template,
            handler,
            parse_name(match.group("name")),
            match.group("ref"),
            endpoint.actions[method],
        )
    raise RegistryError(ErrorCode.NAME_UNKNOWN, "no such API endpoint", {"path": path[:256]})
