"""Blob routes: GET / HEAD (whole, ranged, or redirected) and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from moorage.api.context import Registry, point_read
from moorage.api.file_stream import FileRangeResponse
from moorage.errors import ErrorCode, RegistryError
from moorage.oci.digest import Digest
from moorage.oci.ranges import ByteRange, RangeNotSatisfiable, parse_range
from moorage.services.blobs import BlobInfo
from moorage.storage.port import BlobNotFound
from moorage.threads import in_thread, iterate_in_thread

OCTET_STREAM = "application/octet-stream"


async def _stream(
    registry: Registry,
    info: BlobInfo,
    status: int,
    headers: dict[str, str],
    byte_range: ByteRange | None,
) -> Response:
    """The blob's bytes (or ``byte_range`` of them), streamed.

    A local file is read in 256 KiB pieces, in the event loop while they are in the page cache
    and on a worker thread otherwise (:mod:`moorage.api.file_stream`); a remote one through the
    store's iterator (1 MiB pieces) on worker threads.

    Not ASGI pathsend, though granian implements it: granian 2.8 reads a sent file in 128 KiB
    pieces with a thread hand-off each and never uses sendfile, and on this 2-core machine
    streaming from Python ran at 0.97-1.13x of nginx's sendfile where pathsend ran at
    0.71-1.01x in the same three paired runs of bench/pull.py (server CPU per GiB alike).
    Behind nginx, storage.accel_redirect hands the file to nginx's sendfile instead."""
    first = 0 if byte_range is None else byte_range.first
    length = info.size if byte_range is None else byte_range.length
    try:
        fd = await in_thread(registry.blobs.open_local, info)
        if fd is not None:
            return FileRangeResponse(fd, first, length, status, headers, OCTET_STREAM)
        last = None if byte_range is None else byte_range.last
        chunks = await in_thread(registry.blobs.read, info, first, last)
    except BlobNotFound:  # deleted since the lookup (a collection, a concurrent delete)
        raise RegistryError(ErrorCode.BLOB_UNKNOWN) from None
    return StreamingResponse(iterate_in_thread(chunks), status, headers, OCTET_STREAM)


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
        return await _stream(registry, info, 206, headers, byte_range)
    headers["Content-Length"] = str(info.size)
    return await _stream(registry, info, 200, headers, None)


async def delete_blob(registry: Registry, request: Request, name: str, reference: str) -> Response:
    await in_thread(registry.blobs.delete, name, Digest.parse(reference))
    return Response(b"", 202)
