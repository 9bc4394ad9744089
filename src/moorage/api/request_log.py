"""The request log: one line per request (fields: docs/operations.md).

What it never holds: a header (Authorization included), a query string (a pre-signed URL's
signature, a token request's password) or a path (the route template and the validated
repository name stand for it).

The lines have the format of every other ``moorage`` record, but skip the logging machinery
(a LogRecord, the caller's frame, a handler lock and a write each: together they cost more
than the rest of a manifest GET) and go out in batches (:mod:`moorage.telemetry.line_writer`).
The level is checked once, when the app is built.
"""

from __future__ import annotations

import logging

from moorage.api.observe import RequestRecord
from moorage.telemetry.line_writer import LineWriter
from moorage.telemetry.log_format import LINE_FORMATS

LOGGER = "moorage.request"


def enabled() -> bool:
    """Whether the configured level lets request lines through (they are info)."""
    return logging.getLogger(LOGGER).isEnabledFor(logging.INFO)


class RequestLog:
    """A recorder writing each request's line in ``format`` (``text`` or ``json``)."""

    def __init__(self, format: str) -> None:
        self._line = LINE_FORMATS[format]
        self._writer = LineWriter(self._render)

    def __call__(self, record: RequestRecord) -> None:
        self._writer.write(record)

    def flush(self) -> None:
        """Write the lines still gathered (at shutdown)."""
        self._writer.flush()

    def _render(self, record: RequestRecord) -> str:
        fields = {
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
        }
        return self._line(record.started, "info", LOGGER, "request", fields)
