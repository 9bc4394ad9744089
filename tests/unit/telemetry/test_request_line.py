"""The request log's own line builder writes exactly what the generic line formats write for
the same fields, so a user, repository or address a client chose cannot add a field or a line."""

from __future__ import annotations

import itertools
import json

import pytest

from moorage.api.observe import RequestRecord
from moorage.api.request_log import RequestLog
from moorage.telemetry.log_format import LINE_FORMATS

HOSTILE = [None, "", "ok", "a b", 'x"y', "a\nb", "k=v", "\\", "\u2028é", 'x","status":500,"y":"']


def record(value: str | None, seconds: float = 0.0012345) -> RequestRecord:
    return RequestRecord(
        started=1_765_000_000.25, request_id="0123456789abcdef0123456789abcdef", client=value,
        user=value, method=value or "GET", route="/v2/{name}/manifests/{reference}",
        repository=value, status=200, bytes_in=0, bytes_out=528, seconds=seconds, error=value,
    )  # fmt: skip


def generic(format: str, r: RequestRecord) -> str:
    fields = {
        "request_id": r.request_id, "client": r.client, "user": r.user, "method": r.method,
        "route": r.route, "repository": r.repository, "status": r.status,
        "bytes_in": r.bytes_in, "bytes_out": r.bytes_out,
        "duration_ms": round(r.seconds * 1000, 3), "error": r.error,
    }  # fmt: skip
    return LINE_FORMATS[format](r.started, "info", "moorage.request", "request", fields)


@pytest.mark.parametrize("format", ["text", "json"])
def test_the_line_is_the_generic_formats_line(format: str) -> None:
    log = RequestLog(format)
    for value, seconds in itertools.product(HOSTILE, (0.0, 0.0012345, 0.5, 61.25)):
        for _ in range(2):  # escaped, then from the cache
            line = log.line(record(value, seconds))
            assert line == generic(format, record(value, seconds))
            assert "\n" not in line


def test_a_json_value_cannot_add_a_member() -> None:
    line = RequestLog("json").line(record('x","status":500,"y":"'))
    document = json.loads(line)
    assert document["status"] == 200 and "y" not in document
    assert document["user"] == 'x","status":500,"y":"'
