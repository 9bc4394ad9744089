"""The metrics requests feed, from their :class:`RequestRecord` alone.

Figures are gathered in plain dicts and added to the Prometheus instruments at most once a
second, and before a scrape: an update of a multiprocess value costs a few microseconds in a
request (a lock, a pid check, a write to a memory map), a tenth of a manifest GET for the
three each request needs. A worker's last second of figures shows in the next scrape.
"""

from __future__ import annotations

import asyncio

from moorage.api.observe import RequestRecord
from moorage.api.routes import BLOB, UPLOAD_SESSION, UPLOAD_START
from moorage.telemetry import metrics
from moorage.telemetry.batched_histogram import Observations, add_observations

FLUSH_SECONDS = 1.0
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


class RequestMetrics:
    """A request recorder for one event loop's thread; :meth:`flush` publishes the figures."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], Observations] = {}
        self._sessions: dict[str, int] = {}
        self._received = self._sent = 0
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, record: RequestRecord) -> None:
        route, status = record.route, record.status
        method = record.method if record.method in _METHODS else "other"
        key = (route, method, _STATUS_CLASSES[min(max(status // 100, 1), 5) - 1])
        self._requests[key] = self._requests.get(key, 0) + 1
        durations = self._durations.get((route, method))
        if durations is None:
            durations = self._durations[route, method] = Observations(metrics.REQUEST_BUCKETS)
        durations.add(record.seconds)
        if record.bytes_in and route in _BLOB_BODIES_IN:
            self._received += record.bytes_in
        elif record.bytes_out and route == BLOB and method == "GET" and status in (200, 206):
            self._sent += record.bytes_out
        event = _SESSION_EVENTS.get((route, method, status))
        if event is not None:
            self._sessions[event] = self._sessions.get(event, 0) + 1
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop to wake us later: now, then
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        requests, self._requests = self._requests, {}
        durations, self._durations = self._durations, {}
        sessions, self._sessions = self._sessions, {}
        received, sent, self._received, self._sent = self._received, self._sent, 0, 0
        for series, count in requests.items():
            metrics.REQUESTS.labels(*series).inc(count)
        for route_method, observations in durations.items():
            add_observations(metrics.REQUEST_SECONDS.labels(*route_method), observations)
        for event, count in sessions.items():
            metrics.UPLOAD_SESSIONS.labels(event).inc(count)
        if received:
            metrics.BLOB_BYTES_RECEIVED.inc(received)
        if sent:
            metrics.BLOB_BYTES_SENT.inc(sent)
