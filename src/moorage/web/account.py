"""Signing in and out, and the signed-in user's own API tokens.

Sign-in runs the API's authenticators (``AccessGate.login``): an htpasswd password, or an API
token used as the password as ``podman login`` does. Failures are throttled per user name and
per address before any password is checked.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from moorage.audit import entry as audit
from moorage.audit.entry import AUDIT_KEY
from moorage.auth.access import ScopeError, parse_scopes
from moorage.auth.api_tokens import ApiTokenError, parse_expiry, token_id
from moorage.auth.identity import Via
from moorage.threads import in_thread
from moorage.web.context import WebContext
from moorage.web.forms import FormRefused, read_form
from moorage.web.pages import not_found, refused
from moorage.web.render import clear_cookie, render, set_cookie
from moorage.web.session import SESSION_COOKIE
from moorage.web.viewer import viewer_of

log = logging.getLogger("moorage.web")

EXPIRY_CHOICES = ("7d", "30d", "90d", "365d", "never")
# Longest user name and password a sign-in form passes on (htpasswd lines are far shorter).
CREDENTIAL_MAX = 1024


def _next_page(target: str | None) -> str:
    """Where to go after signing in: a page of the UI only, never another site
    (``//evil.example`` and ``/\\evil.example`` are refused too)."""
    if target and target.startswith("/ui/") and "//" not in target and "\\" not in target:
        return target
    return "/ui/"


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def sign_in(request: Request, context: WebContext) -> Response:
    viewer = viewer_of(context, request)
    if not context.gate.enabled:
        return RedirectResponse("/ui/", status_code=303)
    if request.method != "POST":
        next_page = _next_page(request.query_params.get("next"))
        return render(request, context, viewer, "sign_in.html", next_page=next_page, error="")
    try:
        form = await read_form(request, context)
    except FormRefused as error:
        return refused(request, context, viewer, str(error))
    user = form.get("username", "")[:CREDENTIAL_MAX]
    password = form.get("password", "")[:CREDENTIAL_MAX]
    next_page = _next_page(form.get("next"))
    address = _address(request)

    def again(error: str, status: int) -> Response:
        return render(
            request, context, viewer, "sign_in.html", status, next_page=next_page, error=error
        )

    wait = context.throttle.retry_after(user, address)
    if wait > 0:
        response = again(
            f"Too many failed sign-ins. Try again in {math.ceil(wait / 60)} minute(s).", 429
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    identity = await in_thread(context.gate.login, user, password)
    cookie = None
    if identity is not None:
        api_token = token_id(password) if identity.via is Via.API_TOKEN else None
        cookie = context.signer.issue(identity, api_token)
    if cookie is None:
        context.throttle.failed(user, address)
        request.scope[AUDIT_KEY] = audit.AuditNote(audit.LOGIN_FAILED, audit.REFUSED, user)
        log.info("ui sign-in refused", extra={"user": user[:64], "address": address})
        return again("Wrong user name or password.", 401)
    context.throttle.succeeded(user)
    response = RedirectResponse(next_page, status_code=303)
    set_cookie(response, request, SESSION_COOKIE, cookie, context.signer.lifetime_seconds)
    return response


async def sign_out(request: Request, context: WebContext) -> Response:
    viewer = viewer_of(context, request)
    try:
        await read_form(request, context)
    except FormRefused as error:
        return refused(request, context, viewer, str(error))
    response = RedirectResponse("/ui/", status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


async def tokens(request: Request, context: WebContext) -> Response:
    """GET: the viewer's tokens. POST: create one (its secret shown on this answer only)."""
    viewer = viewer_of(context, request)
    store = context.tokens
    if store is None or not viewer.may_manage_tokens or viewer.name is None:
        return not_found(request, context, viewer)
    user = viewer.name
    created = None
    error = ""
    status = 200
    if request.method == "POST":
        try:
            form = await read_form(request, context)
        except FormRefused as refusal:
            return refused(request, context, viewer, str(refusal))
        try:
            scopes = parse_scopes([form.get("scopes", "")])
            expires = parse_expiry(form.get("expires", "90d"), datetime.now(UTC))
            description = form.get("description", "")[:200]
            created = await in_thread(store.create, user, scopes, expires, description)
            status = 201
            request.scope[AUDIT_KEY] = audit.AuditNote(
                audit.TOKEN_CREATE, user=user, reference=created[0].id
            )
        except (ScopeError, ApiTokenError, ValueError) as problem:
            error = str(problem)[:300]
            status = 400
    listed = await in_thread(store.list, user)
    # The page may hold a secret shown once; like every page it is sent with no-store.
    return render(
        request,
        context,
        viewer,
        "tokens.html",
        status,
        tokens=list(reversed(listed)),
        created=created,
        error=error,
        expiry_choices=EXPIRY_CHOICES,
        now=datetime.now(UTC),
    )


async def revoke_token(request: Request, context: WebContext) -> Response:
    viewer = viewer_of(context, request)
    store = context.tokens
    if store is None or not viewer.may_manage_tokens or viewer.name is None:
        return not_found(request, context, viewer)
    try:
        form = await read_form(request, context)
    except FormRefused as error:
        return refused(request, context, viewer, str(error))
    token_id = form.get("id", "")
    owned = {token.id for token in await in_thread(store.list, viewer.name)}
    # Another user's token id is treated as unknown: the page never acts on, or reveals,
    # anyone else's tokens.
    if token_id not in owned:
        return not_found(request, context, viewer)
    await in_thread(store.revoke, token_id)
    request.scope[AUDIT_KEY] = audit.AuditNote(
        audit.TOKEN_REVOKE, user=viewer.name, reference=token_id
    )
    return RedirectResponse("/ui/tokens", status_code=303)
