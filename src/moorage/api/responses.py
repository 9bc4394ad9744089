"""Rendering: the OCI error envelope and small JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from moorage.errors import RegistryError


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status, headers, media_type)


def error_response(error: RegistryError, head: bool = False) -> Response:
    """The one place a RegistryError becomes HTTP (a HEAD gets the status without a body)."""
    if head:
        return Response(b"", error.status, error.headers)
    return json_response(error.envelope(), error.status, error.headers)
