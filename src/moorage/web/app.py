"""The UI's ASGI app, mounted at /ui by the composition root: routes, the headers every page
carries, and the error boundary."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from moorage.errors import RegistryError
from moorage.response_headers import AddResponseHeaders
from moorage.web import account, pages
from moorage.web.context import WebContext
from moorage.web.render import render
from moorage.web.viewer import viewer_of

log = logging.getLogger("moorage.web")

# No inline script or style anywhere: scripts and styles come only from /ui/static/, so text
# that an image smuggles into a page can never run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


Handler = Callable[[Request, WebContext], Awaitable[Response]]


def build_ui(context: WebContext) -> Starlette:
    def bound(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, context)
            except RegistryError as error:
                # A service refusal (deletion disabled, a database too busy): said plainly.
                viewer = viewer_of(context, request)
                return render(
                    request, context, viewer, "refused.html", error.status, reason=error.message
                )
            except Exception:
                request_id = uuid.uuid4().hex
                log.exception("unhandled ui error", extra={"request_id": request_id})
                viewer = viewer_of(context, request)
                return render(request, context, viewer, "error.html", 500, request_id=request_id)

        return endpoint

    async def missing(request: Request, _: Exception) -> Response:
        return pages.not_found(request, context, viewer_of(context, request))

    routes = [
        Route("/", bound(pages.repositories), methods=["GET", "HEAD"]),
        Route("/r/{path:path}", bound(pages.repository_pages), methods=["GET", "HEAD", "POST"]),
        Route("/usage", bound(pages.usage), methods=["GET", "HEAD"]),
        Route("/sign-in", bound(account.sign_in), methods=["GET", "POST"]),
        Route("/sign-out", bound(account.sign_out), methods=["POST"]),
        Route("/tokens", bound(account.tokens), methods=["GET", "POST"]),
        Route("/tokens/revoke", bound(account.revoke_token), methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("moorage.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: missing, 405: missing})
    app.add_middleware(AddResponseHeaders, headers=SECURITY_HEADERS)
    return app


async def to_ui(_: Request) -> Response:
    """``/`` (and ``/ui`` without its slash): the UI's front page."""
    return RedirectResponse("/ui/", status_code=307)
