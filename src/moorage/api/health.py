"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from moorage.api.context import Registry
from moorage.api.responses import json_response

# What a check that did not answer in time says, in place of an error's kind.
TIMED_OUT = "TimeoutError"


async def ping(_: Request) -> Response:
    """``/_ping`` and ``/v1/_ping``: what the classic registry's load balancer checks."""
    return json_response({})


async def alive(_: Request) -> Response:
    return json_response({"status": "alive"})


def _on_daemon_thread(call: Callable[[], object]) -> asyncio.Future[object]:
    """``call()`` on a new daemon thread; its result (or exception) settles the future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(result: object, error: Exception | None) -> None:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[object, Exception | None] = (call(), None)
        except Exception as error:
            outcome = (None, error)
        with contextlib.suppress(RuntimeError):  # the loop closed while the check hung
            loop.call_soon_threadsafe(settle, *outcome)

    # Read once settled, so a failure nobody waited for any more is not reported as unread.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    threading.Thread(target=run, name="moorage-readyz", daemon=True).start()
    return future


class Readiness:
    """``/readyz``: ready (200) when the database and the blob store both answer within
    ``timeout`` seconds, else 503. The body names each dependency with its status and how long
    it took to answer, or the kind of error (not its message, which could hold an address or a
    bucket name; ``TimeoutError`` when it did not answer in time):
    ``{"status": "ready", "checks": {"database": {"status": "ok", "duration_ms": 0.4}, ...}}``.
    With events on, ``events`` gives the outbox backlog: events and deliveries not yet made.

    The checks run at once, each on a daemon thread of its own: a hung PostgreSQL or S3
    endpoint holds that thread until its own timeouts end it (a stopped server's socket can hold
    it for minutes) but never the answer, the threads requests run on, or the process's exit. A
    check still running from an earlier /readyz is waited for again rather than started twice,
    so a hung dependency holds one thread, however often the orchestrator asks.
    """

    def __init__(self, checks: Mapping[str, Callable[[], object]], timeout: float) -> None:
        self._checks = dict(checks)
        self._timeout = timeout
        self._running: dict[str, asyncio.Future[object]] = {}

    @classmethod
    def of(cls, registry: Registry, timeout: float) -> Readiness:
        checks: dict[str, Callable[[], object]] = {
            "database": lambda: registry.metadata.check(),
            "storage": lambda: registry.storage.check(),
        }
        if registry.event_backlog is not None:
            checks["events"] = registry.event_backlog
        return cls(checks, timeout)

    def _started(self, name: str) -> asyncio.Future[object]:
        running = self._running.get(name)
        if running is None:
            running = self._running[name] = _on_daemon_thread(self._checks[name])
            running.add_done_callback(lambda _: self._running.pop(name, None))
        return running

    async def _check(self, name: str) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            # Shielded: a timeout gives up waiting, the check itself goes on (a thread cannot
            # be stopped) and the next /readyz waits for it.
            result = await asyncio.wait_for(asyncio.shield(self._started(name)), self._timeout)
        except TimeoutError:
            return {"status": "failing", "error": TIMED_OUT}
        except Exception as error:  # any failure means not ready; say which part, not why
            return {"status": "failing", "error": type(error).__name__}
        if name == "events":
            # Informational: a backlog means an endpoint is down or slow, not that this
            # registry cannot serve, so it never makes /readyz fail by itself.
            return {"status": "ok", "backlog": result}
        return {"status": "ok", "duration_ms": round((time.perf_counter() - start) * 1000, 3)}

    async def answer(self) -> Response:
        results = await asyncio.gather(*(self._check(name) for name in self._checks))
        checks = dict(zip(self._checks, results, strict=True))
        if all(check["status"] == "ok" for check in checks.values()):
            return json_response({"status": "ready", "checks": checks})
        return json_response({"status": "unavailable", "checks": checks}, 503)
