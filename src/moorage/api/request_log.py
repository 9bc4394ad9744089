"""The request log: one line per request (fields: docs/operations.md).

What it never holds: a header (Authorization included), a query string (a pre-signed URL's
signature, a token request's password) or a path (the route template and the validated
repository name stand for it).
"""

from __future__ import annotations

import logging

from moorage.api.observe import RequestRecord

log = logging.getLogger("moorage.request")


def enabled() -> bool:
    """Whether the configured level lets request lines through (they are logged at info)."""
    return log.isEnabledFor(logging.INFO)


def log_request(record: RequestRecord) -> None:
    log.info(
        "request",
        extra={
            "request_id": record.request_id,
            "client": record.client,
            "user": record.user,
            "method": record.method,
            "route": record.route,
            "repository": record.repository,
            "status": record.status,
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
            "duration_ms": round(record.seconds * 1000, 3),
            "error": record.error,
        },
    )
