"""Checks on every HTTP request before a handler sees it: requests that a proxy in front and
Moorage would read differently, oversized headers, and bodies that stop arriving.

They share one ASGI layer, and one pass over the headers, because they run on every request
(small manifest and blob requests are the hot path).
"""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moorage.api.responses import error_response
from moorage.errors import ErrorCode, RegistryError

# An escaped "/" or unreserved character (RFC 3986: ALPHA, DIGIT, "-", ".", "_", "~"). No
# client needs to escape these, and decoding them hands the router a path other than the one a
# proxy that matches raw paths allowed: "team%2Fapp" is served as "team/app", "%2E%2E" becomes
# a ".." segment, "te%61m" becomes "team". Escapes of other characters (a digest's ":" sent as
# "%3A", say) decode to something no name grammar accepts, so they cannot alias a repository.
_ALIASING_ESCAPE = re.compile(rb"%(?:2[d-fD-F]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")

# What a header line costs on the wire besides its name and value: ": " and CRLF.
_HEADER_LINE_OVERHEAD = 4


class RequestGuards:
    """Refuses, before any handler runs:

    - a request with both Content-Length and Transfer-Encoding (RFC 9112 section 6.1: a
      request-smuggling vector): 400 SIZE_INVALID;
    - a path that escapes "/" or an unreserved character (see ``_ALIASING_ESCAPE``): 400
      NAME_INVALID;
    - headers larger than ``header_max_bytes`` in total: 431, as nginx and Go answer;

    and answers 408 when a request body goes ``body_idle_timeout`` seconds without a byte
    arriving (see :func:`idle_limited`)."""

    def __init__(self, app: ASGIApp, header_max_bytes: int, body_idle_timeout: float) -> None:
        self.app = app
        self.header_max_bytes = header_max_bytes
        self.body_idle_timeout = body_idle_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await error_response(refusal, scope["method"] == "HEAD")(scope, receive, send)
            return
        await self.app(scope, idle_limited(receive, self.body_idle_timeout), send)

    def _refusal(self, scope: Scope) -> RegistryError | None:
        size = 0
        framing: set[bytes] = set()
        for name, value in scope["headers"]:
            size += len(name) + len(value) + _HEADER_LINE_OVERHEAD
            if name in (b"content-length", b"transfer-encoding"):
                framing.add(name)
        if size > self.header_max_bytes:
            return RegistryError(
                ErrorCode.SIZE_INVALID,
                f"request headers larger than the limit of {self.header_max_bytes} bytes",
                {"limit": self.header_max_bytes},
                status=431,
                headers={"Connection": "close"},
            )
        if len(framing) == 2:
            return RegistryError(
                ErrorCode.SIZE_INVALID,
                "Content-Length and Transfer-Encoding must not both be sent",
                headers={"Connection": "close"},
            )
        # Without raw_path (it is optional in ASGI) only the decoded path is known; granian
        # sends it.
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is not None and b"%" in raw_path and _ALIASING_ESCAPE.search(raw_path):
            return RegistryError(
                ErrorCode.NAME_INVALID,
                "the path must not percent-encode '/' or unreserved characters",
                {"path": raw_path.decode("latin-1")},
            )
        return None


def idle_limited(receive: Receive, seconds: float) -> Receive:
    """``receive`` that raises 408 when the next piece of the request body takes longer than
    ``seconds``: a client trickling a body would otherwise hold its connection, and an upload
    session's lease, for as long as it likes. The error reaches the body reader, which drops
    the partial chunk (see :func:`moorage.api.body.stream_into`), and the error boundary
    renders it. Once the body has ended, ``receive`` is passed through untimed: a response
    may wait on it for a disconnect for as long as it streams."""
    body_ended = False

    async def receive_within() -> Message:
        nonlocal body_ended
        if body_ended:
            return await receive()
        try:
            async with asyncio.timeout(seconds):
                message = await receive()
        except TimeoutError:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                f"no part of the request body arrived for {seconds:g} seconds",
                {"body_idle_timeout_seconds": seconds},
                status=408,
                # The rest of the body may still come; it must not be read as the next request.
                headers={"Connection": "close"},
            ) from None
        body_ended = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_within
