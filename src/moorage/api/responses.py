"""Rendering: the OCI error envelope and small JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from moorage.api.request_state import ERROR_CODE_KEY
from moorage.errors import RegistryError


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status, headers, media_type)


class _ErrorResponse(Response):
    """An error envelope that notes its OCI code in the request's scope as it is sent, for the
    request log: every error, from a handler or a middleware, passes through here."""

    def __init__(self, error: RegistryError, head: bool) -> None:
        body = b"" if head else json.dumps(error.envelope(), separators=(",", ":")).encode()
        super().__init__(body, error.status, error.headers, None if head else "application/json")
        self.code = error.code.wire_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ERROR_CODE_KEY] = self.code
        await super().__call__(scope, receive, send)


def error_response(error: RegistryError, head: bool = False) -> Response:
    """The one place a RegistryError becomes HTTP (a HEAD gets the status without a body)."""
    return _ErrorResponse(error, head)
