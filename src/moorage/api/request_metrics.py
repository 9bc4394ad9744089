"""The metrics one request feeds, from its :class:`RequestRecord` alone."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from moorage.api.observe import RequestRecord
from moorage.api.routes import BLOB, UPLOAD_SESSION, UPLOAD_START
from moorage.telemetry import metrics

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# A client may send any method; anything else is one label value, so it cannot add series.
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# An upload session's life as its requests show it: (route, method, status) -> event. A POST
# with a digest (monolithic) or a mount answers 201 and has no session.
_SESSION_EVENTS = {
    (UPLOAD_START, "POST", 202): "started",
    (UPLOAD_SESSION, "PUT", 201): "completed",
    (UPLOAD_SESSION, "DELETE", 204): "cancelled",
}
_BLOB_BODIES_IN = frozenset((UPLOAD_START, UPLOAD_SESSION))

# The labelled children per (route, method, status class): `.labels()` costs more than the
# update itself. Bounded by the label values' own bounds (routes x methods x classes).
_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def _series(route: str, method: str, status_class: str) -> tuple[Counter, Histogram]:
    key = (route, method, status_class)
    series = _children.get(key)
    if series is None:
        series = _children[key] = (
            metrics.REQUESTS.labels(route, method, status_class),
            metrics.REQUEST_SECONDS.labels(route, method),
        )
    return series


def record_request_metrics(record: RequestRecord) -> None:
    route, status = record.route, record.status
    method = record.method if record.method in _METHODS else "other"
    requests, seconds = _series(route, method, _STATUS_CLASSES[min(max(status // 100, 1), 5) - 1])
    requests.inc()
    seconds.observe(record.seconds)
    if record.bytes_in and route in _BLOB_BODIES_IN:
        metrics.BLOB_BYTES_RECEIVED.inc(record.bytes_in)
    elif record.bytes_out and route == BLOB and method == "GET" and status in (200, 206):
        metrics.BLOB_BYTES_SENT.inc(record.bytes_out)
    event = _SESSION_EVENTS.get((route, method, status))
    if event is not None:
        metrics.UPLOAD_SESSIONS.labels(event).inc()
