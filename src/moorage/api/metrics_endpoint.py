"""``GET /metrics``: the Prometheus text format, for loopback callers or a bearer token.

Metrics reveal who pushes and pulls, and when, so by default only loopback callers get them;
the client is the one after the trusted-proxy rules, so a request relayed by a trusted proxy
counts as the client the proxy names, not as the proxy, and one it relayed without naming a
client (no usable X-Forwarded-For) counts as nobody's: refused. With ``metrics.token`` set,
the token is required of every caller instead (a Prometheus elsewhere sends it; a local user
without it gets nothing).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import Response

from moorage.api.forwarded import is_trusted, parse_trusted
from moorage.api.request_state import CLIENT_UNKNOWN_KEY
from moorage.errors import ErrorCode, RegistryError
from moorage.threads import in_thread

_LOOPBACK = parse_trusted(["127.0.0.0/8", "::1"])


class MetricsEndpoint:
    """``render`` produces the exposition (it reads files: it runs on a worker thread);
    ``publish`` first adds what this worker gathered and has not published yet (on the event
    loop's thread, where it was gathered)."""

    def __init__(
        self, render: Callable[[], bytes], token: str | None, publish: Callable[[], None]
    ) -> None:
        self._render = render
        self._publish = publish
        self._expected = f"Bearer {token}".encode() if token else None

    def _authorize(self, request: Request) -> None:
        if self._expected is None:
            client = request.client
            if request.scope.get(CLIENT_UNKNOWN_KEY) or not is_trusted(
                client.host if client else None, _LOOPBACK
            ):
                raise RegistryError(ErrorCode.DENIED, "metrics are served to loopback callers only")
            return
        given = request.headers.get("authorization", "").encode("latin-1")
        if not hmac.compare_digest(given, self._expected):
            raise RegistryError(
                ErrorCode.UNAUTHORIZED,
                "metrics need the configured bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )

    async def __call__(self, request: Request) -> Response:
        self._authorize(request)
        self._publish()
        body = await in_thread(self._render)
        # generate_latest writes the classic 0.0.4 text format (names are plain ASCII), which
        # every Prometheus parses.
        return Response(body, 200, media_type=CONTENT_TYPE_PLAIN_0_0_4)
