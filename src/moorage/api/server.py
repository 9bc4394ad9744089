"""The ASGI application: routes, the error boundary and the headers every response carries."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from moorage.api import discovery, health
from moorage.api.auth import enforce, identify, remember_identity, token_get, token_post
from moorage.api.context import Registry
from moorage.api.guards import RequestGuards
from moorage.api.observe import ObserveRequests, Recorder
from moorage.api.request_state import REFERENCE_KEY, REPOSITORY_KEY, REQUEST_ID_KEY, ROUTE_KEY
from moorage.api.responses import error_response, json_response
from moorage.api.routes import API_ENDPOINTS, ENDPOINTS, Endpoint, resolve
from moorage.auth.access import CATALOG_ACCESS, PULL, PUSH, repository
from moorage.auth.gate import Decision
from moorage.auth.identity import Identity
from moorage.errors import ErrorCode, RegistryError
from moorage.oci.names import is_valid_name
from moorage.storage.port import StorageThrottled, StorageUnavailable

log = logging.getLogger("moorage.api")

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


async def _guarded(request: Request, call: Callable[[], Any]) -> Response:
    """The error boundary: RegistryErrors become their envelope; anything else becomes a
    logged 500 that shows the client a request id and no internals."""
    head = request.method == "HEAD"
    try:
        response: Response = await call()
        return response
    except RegistryError as error:
        return error_response(error, head)
    except StorageUnavailable as error:
        # The object store failed or throttled us (after the backend's own retries): a 503 the
        # client may retry. The message is the backend's plain one, free of credentials.
        code = (
            ErrorCode.TOOMANYREQUESTS
            if isinstance(error, StorageThrottled)
            else ErrorCode.UNAVAILABLE
        )
        log.warning("storage unavailable: %s", error)
        failure = RegistryError(code, str(error), status=503, headers={"Retry-After": "1"})
        return error_response(failure, head)
    except Exception:
        # The id the request observer gave this request: the client sees it in the body and
        # the X-Request-ID header, and the log has it beside the traceback and the request line.
        request_id = request.scope[REQUEST_ID_KEY]
        log.exception(
            "unhandled error",
            extra={"request_id": request_id, "method": request.method, "path": request.url.path},
        )
        failure = RegistryError(ErrorCode.UNKNOWN, "internal error", {"request_id": request_id})
        return error_response(failure, head)


def _without_unpullable_mount(registry: Registry, request: Request, identity: Identity) -> Request:
    """A cross-repository mount needs pull on the source. Without it the request becomes a
    plain upload start (202 and a session), exactly what a mount of an absent blob gets, so
    the answer reveals nothing about the source repository."""
    query = request.query_params
    source = query.get("from")
    if query.get("mount") is None or not source:
        return request
    # The same decision as a GET on the source: a bearer token's own claim counts, not only
    # what its user could get.
    pull = [repository(source, PULL)]
    if is_valid_name(source) and registry.gate.decide(identity, pull) is Decision.ALLOW:
        return request
    kept = [(key, value) for key, value in query.multi_items() if key not in ("mount", "from")]
    scope = {**request.scope, "query_string": urlencode(kept).encode()}
    return Request(scope, request.receive)


class DirectRoutes:
    """Sends a request for one of ``routes`` (path-catching Routes: ``/v2/{path:path}``,
    ``/api/v1/{path:path}``) straight to its endpoint, as Starlette's router would, but
    without trying the routes before it one by one, and without the exception middleware
    and the request-response wrapper, two more layers around ``send``: the endpoints'
    error boundary (:func:`_guarded`) already turns every error into its envelope. The
    manifest, blob and upload requests are nearly all of a registry's traffic, and these
    layers were a tenth of the event loop's time on a 4 KiB push (py-spy, 2026-12-06).
    Anything else (another method, a ``root_path``, a path of a route that comes before them
    in ``table``, the router's own route list) goes on to the router."""

    def __init__(self, app: ASGIApp, table: Sequence[Route], routes: Sequence[Route]) -> None:
        self.app = app
        self.routes = tuple((route.path.removesuffix("{path:path}"), route) for route in routes)
        # The router tries routes in order: those before these win their paths. They must be
        # fixed paths, so that a set of them says which requests are theirs.
        before = table[: min(table.index(route) for route in routes)]
        assert all("{" not in route.path for route in before), "a pattern before a direct route"
        self.taken = frozenset(route.path for route in before)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            for prefix, route in self.routes:
                if (
                    path.startswith(prefix)
                    and path not in self.taken
                    and route.methods is not None
                    and scope["method"] in route.methods
                ):
                    # What the router leaves in the scope for the endpoint and the observer.
                    scope["route"] = route
                    scope["endpoint"] = route.endpoint
                    scope["path_params"] = {"path": path[len(prefix) :]}
                    response: Response = await route.endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def build_app(
    registry: Registry,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    recorders: Sequence[Recorder] = (),
    metrics: Callable[[Request], Awaitable[Response]] | None = None,
) -> Starlette:
    """The app; ``recorders`` get a record of every request (log, metrics), and ``metrics``
    (None: no such route) answers ``GET /metrics``."""
    gate = registry.gate

    async def v2_root(request: Request) -> Response:
        async def call() -> Response:
            identity = await identify(gate, request)
            remember_identity(request, identity)
            enforce(gate, request, identity, ())
            return json_response({})

        return await _guarded(request, call)

    async def v2_catalog(request: Request) -> Response:
        async def call() -> Response:
            needed = [CATALOG_ACCESS]
            identity = await identify(gate, request, needed)
            remember_identity(request, identity)  # before enforce: a refusal's log names them
            enforce(gate, request, identity, needed)
            return await discovery.catalog(registry, request)

        return await _guarded(request, call)

    async def dispatch(request: Request, endpoints: tuple[Endpoint, ...]) -> Response:
        async def call() -> Response:
            route = resolve(request.path_params["path"], request.method, endpoints)
            request.scope[ROUTE_KEY] = route.template
            request.scope[REPOSITORY_KEY] = route.name
            request.scope[REFERENCE_KEY] = route.reference
            routed = request
            if gate.enabled:
                needed = [repository(route.name, route.action)]
                identity = await identify(gate, request, needed)
                remember_identity(request, identity)  # before enforce: a refusal's log names them
                enforce(gate, request, identity, needed)
                if route.action == PUSH and request.method == "POST":
                    routed = _without_unpullable_mount(registry, request, identity)
            return await route.handler(registry, routed, route.name, route.reference)

        return await _guarded(request, call)

    async def v2_dispatch(request: Request) -> Response:
        return await dispatch(request, ENDPOINTS)

    async def api_dispatch(request: Request) -> Response:
        return await dispatch(request, API_ENDPOINTS)

    async def token(request: Request) -> Response:
        call = token_post if request.method == "POST" else token_get
        return await _guarded(request, lambda: call(gate, request))

    readiness = health.Readiness.of(registry, registry.readiness_timeout_seconds)

    async def readyz(request: Request) -> Response:
        return await readiness.answer()

    all_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    v2_routes = Route("/v2/{path:path}", v2_dispatch, methods=all_methods)
    api_routes = Route("/api/v1/{path:path}", api_dispatch, methods=all_methods)
    routes = [
        Route("/v2/", v2_root, methods=["GET", "HEAD"]),
        Route("/v2", v2_root, methods=["GET", "HEAD"]),
        Route("/v2/_catalog", v2_catalog, methods=["GET"]),
        v2_routes,
        api_routes,
        Route("/token", token, methods=["GET", "POST"]),
        Route("/_ping", health.ping, methods=["GET", "HEAD"]),
        Route("/v1/_ping", health.ping, methods=["GET", "HEAD"]),
        Route("/healthz", health.alive, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
    if metrics is not None:
        endpoint = metrics

        async def metrics_route(request: Request) -> Response:
            return await _guarded(request, lambda: endpoint(request))

        routes.append(Route("/metrics", metrics_route, methods=["GET"]))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        code = ErrorCode.UNSUPPORTED if status == 405 else ErrorCode.NAME_UNKNOWN
        message = "method not allowed" if status == 405 else "no such API endpoint"
        return error_response(RegistryError(code, message, status=status), request.method == "HEAD")

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    # Innermost: only the router's own work is skipped for the routes it takes.
    app.add_middleware(DirectRoutes, table=routes, routes=(v2_routes, api_routes))
    app.add_middleware(
        RequestGuards,
        header_max_bytes=registry.header_max_bytes,
        body_idle_timeout=registry.body_idle_timeout_seconds,
    )
    # Outermost of these, so that it sees every response and every other layer sees the id.
    app.add_middleware(ObserveRequests, recorders=recorders, headers=(API_VERSION_HEADER,))
    return app
