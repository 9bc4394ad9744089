"""An open-loop HTTP load: requests sent at a fixed rate, whatever the answers' latency.

wrk and the benches' push loops are closed loops: each connection sends its next request when
the last one is answered, so they saturate the server and a slow answer delays the requests
behind it (which are then never sent, and their wait never measured). A registry is not loaded
like that: clients arrive on their own schedule. Here each stream sends request ``i`` at
``start + i / rate`` over a pool of keep-alive connections (a new one when none is idle, up to
``max_connections``), and a request's latency is counted from when it was *due*, not from when
a connection was free to send it (as wrk2 does), so queueing in the server, or in this client
falling behind, shows in the percentiles. ``lag_p99_ms`` says how late this client itself sent:
if it is not well under the latencies, the client, not the server, was the bottleneck.

HTTP/1.1 over raw asyncio streams (not httpx): a few thousand requests a second must cost this
client little CPU, since it shares the machine with the server it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Stream:
    """``rate`` requests a second of ``request(i)`` (a whole HTTP/1.1 request, without the
    Host header's line: it is added), each expected to answer ``status``."""

    name: str
    rate: float
    request: Callable[[int], bytes]
    status: int
    max_connections: int = 64
    latencies: list[float] = field(default_factory=list)
    dues: list[float] = field(default_factory=list)  # each latency's due time (monotonic)
    lags: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0


@dataclass(frozen=True)
class OpenLoopResult:
    name: str
    offered_per_s: float
    done_per_s: float
    p50_ms: float
    p99_ms: float
    lag_p99_ms: float
    errors: int

    def __str__(self) -> str:
        return (
            f"{self.done_per_s:.0f}/s of {self.offered_per_s:.0f}/s offered, "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
            + (f", {self.errors} errors" if self.errors else "")
            + f" (client lag p99 {self.lag_p99_ms:.1f} ms)"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


class _Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self.freed:
            while not self.idle and self.opened >= self.limit:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except BaseException:
            await self.lost()
            raise

    async def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        async with self.freed:
            self.idle.append(conn)
            self.freed.notify()

    async def lost(self) -> None:
        async with self.freed:
            self.opened -= 1
            self.freed.notify()

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise ValueError("chunked answers are not handled here")
    if length:
        await reader.readexactly(length)
    return status


async def _one(stream: Stream, pool: _Pool, host_line: bytes, i: int, due: float) -> None:
    try:
        reader, writer = await pool.get()
    except OSError:
        stream.errors += 1
        return
    request = stream.request(i)
    method_line, _, rest = request.partition(b"\r\n")
    try:
        status = await _exchange(reader, writer, method_line + b"\r\n" + host_line + rest)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        stream.errors += 1
        writer.close()
        await pool.lost()
        return
    stream.latencies.append(time.monotonic() - due)
    stream.dues.append(due)
    if status != stream.status:
        stream.errors += 1
    await pool.put((reader, writer))


async def _drive(stream: Stream, pool: _Pool, host_line: bytes, start: float, end: float) -> None:
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while True:
        due = start + i / stream.rate
        if due >= end:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        stream.lags.append(max(0.0, time.monotonic() - due))
        task = asyncio.create_task(_one(stream, pool, host_line, i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stream.sent += 1
        i += 1
    if tasks:
        await asyncio.wait(tasks)


async def _run(url: str, streams: list[Stream], seconds: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    host_line = f"Host: {parts.netloc}\r\n".encode()
    pools = [_Pool(host, port, s.max_connections) for s in streams]
    start = time.monotonic() + 0.05
    try:
        await asyncio.gather(
            *(
                _drive(s, pool, host_line, start, start + seconds)
                for s, pool in zip(streams, pools, strict=True)
            )
        )
    finally:
        for pool in pools:
            pool.close()


def open_loop(url: str, streams: list[Stream], seconds: float) -> dict[str, OpenLoopResult]:
    """Offer each stream's rate for ``seconds``; per stream, what was done and how fast
    (requests still unanswered at the end are waited for and counted)."""
    asyncio.run(_run(url, streams, seconds))
    return {
        s.name: OpenLoopResult(
            name=s.name,
            offered_per_s=s.rate,
            done_per_s=len(s.latencies) / seconds,
            p50_ms=_percentile(s.latencies, 0.5),
            p99_ms=_percentile(s.latencies, 0.99),
            lag_p99_ms=_percentile(s.lags, 0.99),
            errors=s.errors,
        )
        for s in streams
    }
