"""Moorage's own management routes under ``/api/v1`` (not the OCI API): for the web UI and
scripts. Authorized by the same gate and route table as /v2 (``api/routes.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from moorage.api.context import Registry
from moorage.api.responses import json_response
from moorage.threads import in_thread


async def delete_repository(registry: Registry, request: Request, name: str, _: str) -> Response:
    """``DELETE /api/v1/repositories/<name>``: 200 with what was removed."""
    deleted = await in_thread(registry.repositories.delete, name)
    return json_response(
        {
            "repository": deleted.name,
            "tags": deleted.tags,
            "manifests": deleted.manifests,
            "linked_blobs": deleted.linked_blobs,
        }
    )
