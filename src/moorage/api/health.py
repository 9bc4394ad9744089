"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

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
    """Ready when the database and the blob store both answer."""
    problems: dict[str, str] = {}
    for component, check in (
        ("database", registry.metadata.check),
        ("storage", registry.storage.check),
    ):
        try:
            await run_in_threadpool(check)
        except Exception as error:  # any failure means not ready; say which part, not why
            problems[component] = type(error).__name__
    if problems:
        return json_response({"status": "unavailable", "failing": problems}, 503)
    return json_response({"status": "ready"})
