"""What a request learns about itself on its way through, kept in its ASGI scope so that the
request log and the metrics read it at the end without the handlers reporting to them.

Set by: the trusted-proxy middleware (an incoming request id, a client it cannot name), the
request observer (the id otherwise), the /v2 dispatcher (route template, repository,
reference), the auth layer (the identity), handlers with something for the audit trail (an
AuditNote) and :func:`moorage.api.responses.error_response` (the OCI error code).
"""

from __future__ import annotations

import re

from moorage.randomness import random_hex

REQUEST_ID_KEY = "moorage.request_id"
# The caller's Identity (cheaper than Starlette's request.state, which builds an object per
# request).
IDENTITY_KEY = "moorage.identity"
ROUTE_KEY = "moorage.route"
REPOSITORY_KEY = "moorage.repository"
ERROR_CODE_KEY = "moorage.error_code"
# The /v2 route's reference (tag or digest), for the audit trail.
REFERENCE_KEY = "moorage.reference"
# True when a trusted proxy relayed the request without naming its client: the scope's client
# is then the proxy's own address, which must not count as the caller's (/metrics).
CLIENT_UNKNOWN_KEY = "moorage.client_unknown"

REQUEST_ID_HEADER = b"x-request-id"
# A proxy's id is written into logs and echoed back: keep to a charset that cannot break a
# line or a header, and a sane length.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def new_request_id() -> str:
    """32 random hex digits (the same shape as a UUID's), without a GIL hand-off
    (:mod:`moorage.randomness`)."""
    return random_hex(16)


def acceptable_request_id(value: str) -> str | None:
    """``value`` if it is fit to log and echo as a request id, else None."""
    return value if _ACCEPTABLE_ID.fullmatch(value) else None
