"""Reading a POSTed form and checking its CSRF token.

Forms are small and urlencoded; they are parsed here with the standard library (Starlette's own
form parser needs another package) under a size cap.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request

from moorage.web.context import WebContext
from moorage.web.render import csrf_nonce

FORM_MAX_BYTES = 16 * 1024


class FormRefused(Exception):
    """A form that must not be acted on: too large, not a form, or without a valid CSRF token
    (a post from another site, or from a page older than the browser's CSRF cookie)."""


async def read_form(request: Request, context: WebContext) -> dict[str, str]:
    """The form's fields (the first value of each), after checking its CSRF token."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormRefused("not a form")
    body = bytearray()
    try:
        async for piece in request.stream():
            body += piece
            if len(body) > FORM_MAX_BYTES:
                raise FormRefused("form too large")
    except ClientDisconnect:
        raise FormRefused("incomplete form") from None
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise FormRefused("the form is not UTF-8") from None
    fields = {key: values[0] for key, values in parsed.items()}
    if not context.signer.csrf_valid(csrf_nonce(request), fields.get("csrf")):
        raise FormRefused("invalid or missing CSRF token")
    return fields
