"""Reading request bodies without ever holding a blob in memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from moorage.errors import ErrorCode, RegistryError
from moorage.oci.numbers import parse_decimal
from moorage.services.uploads import ByteSink
from moorage.threads import in_thread

# Batches queued between the receiving event loop and the writing thread.
PIPELINE_DEPTH = 4

# Body pieces are gathered into batches this size before a worker thread hashes and writes
# them: big enough to amortise the thread hop, small enough to keep memory flat.
WRITE_BATCH = 1024 * 1024


def declared_length(request: Request) -> int | None:
    """Content-Length as an int, or None when absent; 400 when it is garbage."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    length = parse_decimal(raw)
    if length is None:
        raise RegistryError(ErrorCode.SIZE_INVALID, "Content-Length must be a non-negative integer")
    return length


async def _batches(request: Request) -> AsyncIterator[bytes]:
    pending: list[bytes] = []
    size = 0
    async for piece in request.stream():
        if not piece:
            continue
        pending.append(piece)
        size += len(piece)
        if size >= WRITE_BATCH:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


async def stream_into(request: Request, sink: ByteSink) -> None:
    """Feed the whole request body into ``sink``; abort it on any failure (a cut connection
    leaves the upload exactly where it was). The caller then finishes the sink.

    Receiving and writing overlap: while a worker thread hashes and writes one batch, the event
    loop receives the next. At most ``PIPELINE_DEPTH`` batches wait, so memory stays bounded.
    """
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)

    async def write_batches() -> None:
        while (batch := await queue.get()) is not None:
            await in_thread(sink.write, batch)

    writer = asyncio.create_task(write_batches())
    try:
        async for batch in _batches(request):
            await _put_unless_failed(queue, batch, writer)
        await _put_unless_failed(queue, None, writer)
        await writer
    except BaseException as failure:
        writer.cancel()  # waits for a write already in its thread; never runs two at once
        with contextlib.suppress(BaseException):
            await writer
        await in_thread(sink.abort)
        if isinstance(failure, ClientDisconnect):
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID, "the client disconnected before the body ended"
            ) from None
        raise


async def _put_unless_failed(
    queue: asyncio.Queue[bytes | None], item: bytes | None, writer: asyncio.Task[None]
) -> None:
    """Queue ``item``, or raise the writer's error if it fails while the queue is full."""
    put = asyncio.ensure_future(queue.put(item))
    done, _ = await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
    if put not in done:
        put.cancel()
        await writer  # it ended early, so it failed: re-raise its error
        raise RuntimeError("upload writer stopped before the body ended")


async def read_body(request: Request, length: int) -> bytes:
    """A body the caller knows to be small (``length`` from Content-Length), read whole."""
    body = await read_at_most(
        request, length, RegistryError(ErrorCode.SIZE_INVALID, "body longer than Content-Length")
    )
    if len(body) != length:
        raise RegistryError(ErrorCode.SIZE_INVALID, "body shorter than Content-Length")
    return body


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole manifest body if it is at most ``limit`` bytes, else 413 without reading the
    rest."""
    too_big = RegistryError(
        ErrorCode.MANIFEST_TOO_BIG,
        f"manifest larger than the limit of {limit} bytes",
        {"limit": limit},
    )
    length = declared_length(request)
    if length is not None and length > limit:
        raise too_big
    return await read_at_most(request, limit, too_big)


async def read_at_most(request: Request, limit: int, too_big: RegistryError) -> bytes:
    pieces: list[bytes] = []
    total = 0
    try:
        async for piece in request.stream():
            total += len(piece)
            if total > limit:
                raise too_big
            pieces.append(piece)
    except ClientDisconnect:
        raise RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID, "the client disconnected before the body ended"
        ) from None
    return b"".join(pieces)
