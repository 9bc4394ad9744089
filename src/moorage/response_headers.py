"""An ASGI middleware adding fixed headers to every response (errors and files included)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AddResponseHeaders:
    """Adds ``headers`` to every HTTP response of ``app``: the registry's API version header,
    the UI's security headers. As a middleware, not per handler, so that no answer (a 404 from
    the router, a static file, an error page) goes out without them."""

    def __init__(self, app: ASGIApp, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = tuple(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
