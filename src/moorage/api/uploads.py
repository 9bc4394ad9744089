"""Upload routes: POST (start, monolithic, mount), PATCH, PUT, GET status, DELETE cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from moorage.api.body import WRITE_BATCH, declared_length, read_body, stream_into
from moorage.api.context import Registry, point_read
from moorage.errors import ErrorCode, RegistryError
from moorage.oci.digest import Digest
from moorage.oci.names import parse_name
from moorage.oci.ranges import ByteRange, parse_content_range
from moorage.services.uploads import Append
from moorage.threads import in_thread

P = ParamSpec("P")
R = TypeVar("R")


def progress_headers(repository: str, upload_id: str, offset: int) -> dict[str, str]:
    """Location, Range (inclusive end; ``0-0`` when empty, as distribution does) and the id."""
    return {
        "Location": f"/v2/{repository}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def blob_created(repository: str, digest: Digest) -> Response:
    return Response(
        b"",
        201,
        {"Location": f"/v2/{repository}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
    )


def _has_body(request: Request) -> bool:
    length = declared_length(request)
    return (length is not None and length > 0) or "chunked" in request.headers.get(
        "transfer-encoding", ""
    ).lower()


async def _in_session(
    name: str, upload_id: str, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """Run a service call that claims the session in a worker thread. A chunk that cannot go
    on now (out of order: 416; the session busy: 429) is refused with the upload's progress,
    so the client can resume."""
    try:
        return await in_thread(call, *args, **kwargs)
    except RegistryError as error:
        refused = (ErrorCode.RANGE_INVALID, ErrorCode.TOOMANYREQUESTS)
        if error.code in refused and isinstance(error.detail, dict):
            error.headers.update(progress_headers(name, upload_id, error.detail["offset"]))
        raise


def _content_range(request: Request) -> ByteRange | None:
    header = request.headers.get("content-range")
    return parse_content_range(header) if header is not None else None


async def _begin_append(
    registry: Registry, request: Request, name: str, upload_id: str, ranged: bool
) -> Append:
    """Claim the session for this request; ``ranged`` honours a Content-Range header."""
    content_range = _content_range(request) if ranged else None
    return await _in_session(
        name, upload_id, registry.uploads.begin_append, name, upload_id, content_range
    )


async def start_upload(registry: Registry, request: Request, name: str) -> Response:
    query = request.query_params
    mount, source = query.get("mount"), query.get("from")
    if mount is not None and source:
        mounted = Digest.parse(mount)
        if await in_thread(registry.uploads.mount, name, mounted, parse_name(source)):
            return blob_created(name, mounted)
    digest_text = query.get("digest")
    if digest_text is not None:
        digest = Digest.parse(digest_text)
        length = declared_length(request)
        if length is not None and length <= WRITE_BATCH:
            # Small blob: read it, then one trip to a worker thread instead of three.
            data = await read_body(request, length)
            await in_thread(registry.uploads.put_whole, name, digest, data)
            return blob_created(name, digest)
        whole = await in_thread(registry.uploads.begin_whole, name, digest)
        await stream_into(request, whole)
        await in_thread(whole.finish)
        return blob_created(name, digest)
    # No I/O: the session lives in its id until bytes come (services/upload_ids.py).
    session = registry.uploads.start(name, query.get("digest-algorithm"))
    return Response(b"", 202, progress_headers(name, session.id, 0))


async def patch_upload(registry: Registry, request: Request, name: str, upload_id: str) -> Response:
    length = declared_length(request)
    if length is not None and 0 < length <= WRITE_BATCH:
        # Small chunk: read it, then one trip to a worker thread (and for a session's first
        # bytes, one transaction: UploadService.patch_fresh).
        content_range = _content_range(request)
        data = await read_body(request, length)
        uploads = registry.uploads
        session = await _in_session(
            name, upload_id, uploads.append_small, name, upload_id, content_range, data
        )
    else:
        append = await _begin_append(registry, request, name, upload_id, ranged=True)
        await stream_into(request, append)
        session = await in_thread(append.finish)
    return Response(b"", 202, progress_headers(name, upload_id, session.offset))


async def finish_upload(
    registry: Registry, request: Request, name: str, upload_id: str
) -> Response:
    digest_text = request.query_params.get("digest")
    if digest_text is None:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required")
    digest = Digest.parse(digest_text)
    has_body = _has_body(request)
    if has_body and "content-range" not in request.headers:
        # The whole blob on a session with no bytes yet (POST then PUT): a monolithic upload
        # that ends the session in the blob's own transaction (UploadService.begin_fresh).
        uploads = registry.uploads
        length = declared_length(request)
        if length is not None and length <= WRITE_BATCH:
            data = await read_body(request, length)
            if await in_thread(uploads.put_fresh, name, upload_id, digest, data):
                return blob_created(name, digest)
            append = await _begin_append(registry, request, name, upload_id, ranged=False)
            await in_thread(_take_and_complete, append, data, digest)
            return blob_created(name, digest)
        whole = await in_thread(uploads.begin_fresh, name, upload_id, digest)
        if whole is not None:
            await stream_into(request, whole)
            await in_thread(whole.finish)
            return blob_created(name, digest)
    if not has_body:
        # The closing PUT after PATCHes: one trip, and mostly one transaction
        # (UploadService.complete_unheld).
        complete = registry.uploads.complete_small
        await _in_session(name, upload_id, complete, name, upload_id, digest)
        return blob_created(name, digest)
    append = await _begin_append(registry, request, name, upload_id, ranged=True)
    await stream_into(request, append)
    # One call, under the lease taken above: verify, publish, link, end the session.
    await in_thread(append.complete, digest)
    return blob_created(name, digest)


def _take_and_complete(append: Append, data: bytes, digest: Digest) -> None:
    append.take(data)
    append.complete(digest)


async def upload_status(
    registry: Registry, request: Request, name: str, upload_id: str
) -> Response:
    session = await point_read(registry, registry.uploads.status, name, upload_id)
    return Response(b"", 204, progress_headers(name, upload_id, session.offset))


async def cancel_upload(
    registry: Registry, request: Request, name: str, upload_id: str
) -> Response:
    await in_thread(registry.uploads.cancel, name, upload_id)
    return Response(b"", 204)
