"""The request observer, driven with bare ASGI messages: what each record says."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from moorage.api.observe import ObserveRequests, RequestRecord
from moorage.api.request_state import REQUEST_ID_KEY, ROUTE_KEY


def http_scope(**extra: Any) -> Scope:
    scope: Scope = {"type": "http", "method": "GET", "path": "/x", "headers": [],
                    "client": ("192.0.2.1", 5)}  # fmt: skip
    scope.update(extra)
    return scope


async def run(app: Any, scope: Scope) -> tuple[list[RequestRecord], list[Message]]:
    records: list[RequestRecord] = []
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"12345", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    # The app's failure is re-raised after the record; the record is what is looked at here.
    with contextlib.suppress(BaseException):
        await ObserveRequests(app, [records.append])(scope, receive, send)
    return records, sent


async def test_a_file_handed_to_the_server_counts_its_length() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        scope[ROUTE_KEY] = "/v2/{name}/blobs/{digest}"
        headers = [(b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": "/blob"})

    [record], sent = await run(app, http_scope())
    assert (record.status, record.bytes_in, record.bytes_out) == (200, 5, 4096)
    assert (record.route, record.client) == ("/v2/{name}/blobs/{digest}", "192.0.2.1")
    assert (b"x-request-id", record.request_id.encode()) in sent[0]["headers"]


@pytest.mark.parametrize(
    ("failure", "status"), [(RuntimeError("bug"), 500), (asyncio.CancelledError(), 499)]
)
async def test_a_request_that_sent_nothing(failure: BaseException, status: int) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise failure

    [record], sent = await run(app, http_scope(**{REQUEST_ID_KEY: "from-proxy"}))
    assert (record.status, record.route, record.request_id) == (status, "unmatched", "from-proxy")
    assert sent == []
