"""Rendering pages: one autoescaping Jinja2 environment, the CSRF cookie, the cookie flags.

Autoescape is on for every template, so any text from a manifest, a config or a tag name is
escaped unless a template marks it safe, which none does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from moorage.web import format as fmt
from moorage.web.context import WebContext
from moorage.web.session import COOKIE_PATH, CSRF_COOKIE, SessionSigner
from moorage.web.viewer import Viewer

# A CSRF cookie longer than this was not set by us.
_NONCE_MAX = 64


def repository_url(name: str) -> str:
    return f"/ui/r/{quote(name, safe='/')}"


def image_url(name: str, reference: str) -> str:
    return f"{repository_url(name)}/-/m/{quote(reference, safe=':')}"


def delete_url(name: str, reference: str) -> str:
    return f"{repository_url(name)}/-/delete?{urlencode({'ref': reference})}"


def query_url(path: str, **params: object) -> str:
    kept = {key: value for key, value in params.items() if value not in (None, "", False)}
    return f"{path}?{urlencode(kept)}" if kept else path


_environment = Environment(
    loader=PackageLoader("moorage.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(
    human_size=fmt.human_size,
    relative_time=fmt.relative_time,
    exact_time=fmt.exact_time,
    iso_time=fmt.iso_time,
    short_digest=fmt.short_digest,
    percent=fmt.percent,
)
_environment.globals.update(
    repository_url=repository_url,
    image_url=image_url,
    delete_url=delete_url,
    query_url=query_url,
)


def is_secure(request: Request) -> bool:
    """Served over TLS, directly or (with proxy.trusted) behind a TLS-terminating proxy whose
    X-Forwarded-Proto the proxy middleware has already applied to the scope."""
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=is_secure(request),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, secure=is_secure(request), httponly=True, samesite="lax"
    )


def csrf_nonce(request: Request) -> str | None:
    nonce = request.cookies.get(CSRF_COOKIE)
    return nonce if nonce and len(nonce) <= _NONCE_MAX else None


def render(
    request: Request,
    context: WebContext,
    viewer: Viewer,
    template: str,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """The page ``template`` for ``viewer``, with a CSRF token for its forms (and the cookie
    it is checked against, set here on a browser's first page)."""
    signer: SessionSigner = context.signer
    nonce = csrf_nonce(request)
    fresh = nonce is None
    if nonce is None:
        nonce = signer.new_csrf_nonce()
    html = _environment.get_template(template).render(
        viewer=viewer,
        csrf_token=signer.csrf_token(nonce),
        host=request.url.netloc,
        path=request.url.path,
        **values,
    )
    response = HTMLResponse(html, status)
    # What a page shows depends on who asks: no shared cache may keep it for someone else.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Cookie"
    if fresh:
        set_cookie(response, request, CSRF_COOKIE, nonce, None)
    return response
