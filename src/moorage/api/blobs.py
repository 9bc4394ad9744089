"""Blob routes: GET / HEAD (whole, ranged, or redirected) and DELETE."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from moorage.api.context import Registry, point_read
from moorage.api.responses import error_response
from moorage.errors import ErrorCode, RegistryError
from moorage.oci.digest import Digest
from moorage.oci.ranges import RangeNotSatisfiable, parse_range
from moorage.services.blobs import BlobInfo

OCTET_STREAM = "application/octet-stream"


class _WholeFileResponse(FileResponse):
    """A FileResponse that never interprets Range itself (we already did): it hands the path to
    the server (ASGI pathsend: granian reads and sends it, no byte through Python) or streams it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # This runs after the handler returned, outside the error boundary: a blob deleted
        # since its lookup would otherwise end as Starlette's plain-text 500.
        try:
            self.stat_result = await anyio.to_thread.run_sync(os.stat, self.path)
        except FileNotFoundError:
            error = RegistryError(ErrorCode.BLOB_UNKNOWN)
            await error_response(error, scope.get("method") == "HEAD")(scope, receive, send)
            return
        self.set_stat_headers(self.stat_result)
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"range"]
        await super().__call__({**scope, "headers": headers}, receive, send)


# Sent by a proxy that can send files itself (nginx: `proxy_set_header X-Sendfile-Type
# X-Accel-Redirect`, as Rack::Sendfile expects it). Without it the bytes are sent from here, so
# a client that reaches Moorage directly (a job on the same host) still gets its blob; one that
# forges it only gets an empty answer for itself.
SENDFILE_TYPE = "x-sendfile-type"
ACCEL_REDIRECT = "x-accel-redirect"


def _accel_redirect(registry: Registry, request: Request, info: BlobInfo) -> str | None:
    """The internal nginx URI of the blob's file when storage.accel_redirect is on, the request
    came through the proxy that sends files, and the blob is a local file. Built from the parsed
    digest alone, so it cannot name any other file."""
    if registry.accel_redirect is None:
        return None
    if request.headers.get(SENDFILE_TYPE, "").strip().lower() != ACCEL_REDIRECT:
        return None
    relative = registry.blobs.relative_path(info)
    return None if relative is None else registry.accel_redirect + relative


async def get_blob(registry: Registry, request: Request, name: str, reference: str) -> Response:
    digest = Digest.parse(reference)
    info = await point_read(registry, registry.blobs.stat, name, digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    range_header = request.headers.get("range")
    byte_range = None
    if range_header is not None:
        try:
            byte_range = parse_range(range_header, info.size)
        except RangeNotSatisfiable:
            raise RegistryError(
                ErrorCode.RANGE_INVALID,
                "requested range not satisfiable",
                {"size": info.size},
                headers={"Content-Range": f"bytes */{info.size}"},
            ) from None

    if request.method == "GET":
        # A pre-signed object store URL: the bytes never pass through us. A (valid) Range
        # header goes on to the store with the client. HEAD is answered here.
        redirect = registry.blobs.redirect_url(info)
        if redirect is not None:
            return RedirectResponse(redirect, 307, headers)
        accel = _accel_redirect(registry, request, info)
        if accel is not None:
            # nginx sends the file itself (sendfile), and the client's Range header with it:
            # the request was authorized and the range checked above, and nginx's internal
            # location answers a list of ranges with the whole blob (max_ranges 1), as we do.
            headers["X-Accel-Redirect"] = accel
            # nginx's range filter announces it for the file; ours would be passed on as well.
            del headers["Accept-Ranges"]
            return Response(b"", 200, headers, OCTET_STREAM)

    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size if byte_range is None else byte_range.length)
        status = 200
        if byte_range is not None:
            headers["Content-Range"] = byte_range.content_range(info.size)
            status = 206
        return Response(b"", status, headers, OCTET_STREAM)

    if byte_range is not None:
        headers["Content-Range"] = byte_range.content_range(info.size)
        headers["Content-Length"] = str(byte_range.length)
        chunks = await run_in_threadpool(
            registry.blobs.read, info, byte_range.first, byte_range.last
        )
        return StreamingResponse(iterate_in_threadpool(chunks), 206, headers, OCTET_STREAM)

    path: Path | None = registry.blobs.local_path(info)
    if path is not None:
        return _WholeFileResponse(path, headers=headers, media_type=OCTET_STREAM)
    headers["Content-Length"] = str(info.size)
    chunks = await run_in_threadpool(registry.blobs.read, info)
    return StreamingResponse(iterate_in_threadpool(chunks), 200, headers, OCTET_STREAM)


async def delete_blob(registry: Registry, request: Request, name: str, reference: str) -> Response:
    await run_in_threadpool(registry.blobs.delete, name, Digest.parse(reference))
    return Response(b"", 202)
