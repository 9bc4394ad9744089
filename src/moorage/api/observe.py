"""The request observer: gives every request an id (echoed in ``X-Request-ID``), times it,
counts its bytes, and hands one :class:`RequestRecord` per request to the recorders (the
request log, the metrics). With no recorders it only sets the id.

It wraps everything but the trusted-proxy middleware, so it sees the client after the proxy
rules and every response, errors included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moorage.api.request_state import (
    ERROR_CODE_KEY,
    IDENTITY_KEY,
    REFERENCE_KEY,
    REPOSITORY_KEY,
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    ROUTE_KEY,
    new_request_id,
)
from moorage.audit.entry import AUDIT_KEY
from moorage.events.context import ACTOR, REQUEST_ID

log = logging.getLogger("moorage.api")

# The route of a request no route matched (a bounded label, unlike its path).
UNMATCHED = "unmatched"
# The status recorded for a request whose client went away before any response (nginx's
# convention): a 4xx, so that clients hanging up never look like server errors.
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class RequestRecord:
    started: float  # Unix time of arrival
    request_id: str
    client: str | None
    user: str | None
    method: str
    route: str
    repository: str | None
    status: int
    bytes_in: int  # request body bytes read
    bytes_out: int  # response body bytes sent (a file handed to the server: its length)
    seconds: float
    error: str | None  # the OCI error code, when the response was an error envelope
    reference: str | None = None  # a /v2 route's tag or digest
    audit: object | None = None  # a handler's moorage.audit.entry.AuditNote, if any


Recorder = Callable[[RequestRecord], None]


def _route(scope: Scope) -> str:
    route = scope.get(ROUTE_KEY)
    if route is not None:
        return str(route)
    matched = scope.get("route")  # Starlette's Route, for the routes it matches itself
    return str(getattr(matched, "path", UNMATCHED))


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return 0


class ObserveRequests:
    """``headers``: fixed headers every response also gets (the API version), added in the
    same pass as the request id's rather than by one more layer wrapping ``send``."""

    def __init__(
        self,
        app: ASGIApp,
        recorders: Sequence[Recorder] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.app = app
        self.recorders = tuple(recorders)
        self.headers = tuple(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get(REQUEST_ID_KEY)
        if request_id is None:  # not given by a trusted proxy
            request_id = scope[REQUEST_ID_KEY] = new_request_id()
        added = (*self.headers, (REQUEST_ID_HEADER, request_id.encode("latin-1")))
        # For the events this request's changes write (its task's context; see events.context).
        REQUEST_ID.set(request_id)
        ACTOR.set(None)
        if not self.recorders:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *added]
                await send(message)

            await self.app(scope, receive, send_with_id)
            return

        started, start = time.time(), time.perf_counter()
        status = bytes_in = bytes_out = 0
        response_headers: Sequence[tuple[bytes, bytes]] = ()

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            nonlocal status, bytes_out, response_headers
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                response_headers = message["headers"] = [*message.get("headers", ()), *added]
            elif kind == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif kind == "http.response.pathsend":
                bytes_out += _content_length(response_headers)
            await send(message)

        try:
            await self.app(scope, counting_receive, observing_send)
        except BaseException as failure:
            if not status:  # nothing was sent: say why
                status = 500 if isinstance(failure, Exception) else CLIENT_CLOSED
            raise
        finally:
            identity = scope.get(IDENTITY_KEY)
            client = scope.get("client")
            record = RequestRecord(
                started=started,
                request_id=request_id,
                client=client[0] if client else None,
                user=identity.name if identity is not None else None,
                method=scope["method"],
                route=_route(scope),
                repository=scope.get(REPOSITORY_KEY),
                status=status,
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                seconds=time.perf_counter() - start,
                error=scope.get(ERROR_CODE_KEY),
                reference=scope.get(REFERENCE_KEY),
                audit=scope.get(AUDIT_KEY),
            )
            for recorder in self.recorders:
                try:
                    recorder(record)
                except Exception:  # a broken recorder must not break the request it describes
                    log.exception("request recorder failed", extra={"request_id": request_id})
