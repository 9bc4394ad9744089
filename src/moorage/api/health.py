"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from moorage.api.context import Registry
from moorage.api.responses import json_response


async def ping(_: Request) -> Response:
    """``/_ping`` and ``/v1/_ping``: what the classic registry's load balancer checks."""
    return json_response({})


async def alive(_: Request) -> Response:
    return json_response({"status": "alive"})


async def ready(registry: Registry) -> Response:
    """Ready (200) when the database and the blob store both answer, else 503. The body names
    each dependency with its status and how long it took to answer, or the kind of error (not
    its message, which could hold an address or a bucket name):
    ``{"status": "ready", "checks": {"database": {"status": "ok", "duration_ms": 0.4}, ...}}``.
    With events on, ``events`` gives the outbox backlog: events and deliveries not yet made.
    """
    checks: dict[str, dict[str, Any]] = {}
    for component, check in (
        ("database", registry.metadata.check),
        ("storage", registry.storage.check),
    ):
        start = time.perf_counter()
        try:
            await run_in_threadpool(check)
        except Exception as error:  # any failure means not ready; say which part, not why
            checks[component] = {"status": "failing", "error": type(error).__name__}
        else:
            elapsed = round((time.perf_counter() - start) * 1000, 3)
            checks[component] = {"status": "ok", "duration_ms": elapsed}
    if registry.event_backlog is not None:
        # Informational: a backlog means an endpoint is down or slow, not that this registry
        # cannot serve, so it never makes /readyz fail by itself.
        try:
            backlog = await run_in_threadpool(registry.event_backlog)
        except Exception as error:
            checks["events"] = {"status": "failing", "error": type(error).__name__}
        else:
            checks["events"] = {"status": "ok", "backlog": backlog}
    if all(check["status"] == "ok" for check in checks.values()):
        return json_response({"status": "ready", "checks": checks})
    return json_response({"status": "unavailable", "checks": checks}, 503)
