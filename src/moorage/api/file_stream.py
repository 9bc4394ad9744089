"""A response that streams a byte range of a local file, read in the event loop when cached.

A blob being pulled is almost always in the page cache (it was just pushed, or pulled by the
previous client). Reading it on a worker thread then costs more than the read: a thread hop
and a wake-up per piece, and with several pulls at once the threads and the event loop take
turns at the GIL. So each piece is first read with ``preadv(..., RWF_NOWAIT)``, which copies
what is cached and fails with EAGAIN instead of waiting for the disk; only then does the
piece go to a worker thread, so a cold disk never blocks the event loop. Measured with six
parallel 170 MiB pulls (bench/pull.py --parallel 6): server CPU per GiB from 0.44-0.54 s
(worker threads) to 0.31-0.35 s, on a machine busy with other work.
"""

from __future__ import annotations

import errno
import os

import anyio
import anyio.lowlevel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from moorage.threads import in_thread

# 256 KiB: the same CPU per GiB as 1 MiB pieces (six alternated pairs of six parallel pulls:
# 0.29-0.34 against 0.31 s/GiB; one pull: 0.27-0.29 against 0.24-0.30), and a request that
# shares the worker with pulls waits for a shorter turn of the event loop (GET /v2/ during six
# 1 GiB pulls on one worker: p90 1.8-2.0 ms, against 3.2-7.5 ms with 1 MiB and 2.0-4.0 ms with
# the worker threads). 2 and 4 MiB pieces doubled the CPU per GiB (a fresh buffer that big, and
# the server's copy of it, are mapped and faulted in anew each time).
PIECE = 256 * 1024

# Linux >= 4.14 (for regular files on most filesystems since 5.x); elsewhere always a thread.
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class BlobFileShort(Exception):
    """The file ended before the length promised in Content-Length (it cannot for a stored
    blob, which is never changed in place): the connection is cut, so the client sees a short
    body rather than wrong bytes."""


async def _disconnected(receive: Receive) -> None:
    """Return once the client is gone (a GET's empty request body is read and ignored)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _read_waiting(fd: int, piece: memoryview, offset: int) -> int:
    return os.preadv(fd, [piece], offset)


def _read_cached(fd: int, piece: memoryview, offset: int) -> int | None:
    """Bytes read from the page cache alone, or None when that would have to wait for the disk
    (or the filesystem cannot tell: EOPNOTSUPP)."""
    if _RWF_NOWAIT is None:
        return None
    try:
        return os.preadv(fd, [piece], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as error:
        if error.errno == errno.EOPNOTSUPP:
            return None
        raise


async def _read_piece(fd: int, piece: memoryview, offset: int) -> int:
    """Fill ``piece`` from ``fd`` at ``offset`` (fully or in part); the number of bytes read."""
    got = _read_cached(fd, piece, offset)
    if got is None:
        got = await in_thread(_read_waiting, fd, piece, offset)
    return got


class FileRangeResponse(Response):
    """Bytes ``first .. first+length-1`` of the open file ``fd``, which it owns and closes.

    The file is opened before the response is made, so that a blob deleted since the lookup
    is still a 404 envelope; once open, a delete (by the garbage collector) leaves the bytes
    readable to the end."""

    def __init__(
        self,
        fd: int,
        first: int,
        length: int,
        status: int,
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        super().__init__(None, status, headers, media_type)
        self.fd = fd
        self.first = first
        self.length = length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start = {"type": "http.response.start", "status": self.status_code}
            await send({**start, "headers": self.raw_headers})
            # Stop reading when the client goes away: granian (ASGI spec 2.3) does not fail a
            # send to a closed connection, it answers the next receive with http.disconnect
            # (Starlette's StreamingResponse listens the same way).
            try:
                async with anyio.create_task_group() as group:

                    async def body() -> None:
                        await self._send_body(send)
                        group.cancel_scope.cancel()

                    group.start_soon(body)
                    await _disconnected(receive)
                    group.cancel_scope.cancel()
            except BaseExceptionGroup as failed:  # one task failed: its own error, unwrapped
                if len(failed.exceptions) == 1:
                    raise failed.exceptions[0] from None
                raise
        finally:
            os.close(self.fd)

    async def _send_body(self, send: Send) -> None:
        offset, end = self.first, self.first + self.length
        if offset == end:
            await send({"type": "http.response.body", "body": b""})
        while offset < end:
            # A fresh buffer each time: the ASGI server may keep the body it was given. Sent as
            # the bytearray it is (granian copies any bytes-like body; bytes() would copy it
            # once more).
            buffer = bytearray(min(PIECE, end - offset))
            got = await _read_piece(self.fd, memoryview(buffer), offset)
            if got == 0:
                raise BlobFileShort(f"{end - offset} bytes missing at offset {offset}")
            offset += got
            body = buffer if got == len(buffer) else bytes(buffer[:got])
            await send({"type": "http.response.body", "body": body, "more_body": offset < end})
            # A read from the cache and granian's send may both complete without giving the
            # event loop a turn: let the disconnect listener (and other requests) run.
            await anyio.lowlevel.checkpoint()
