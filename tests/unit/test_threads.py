"""in_thread: a blocking call on a worker thread, with the promises handlers rely on."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from moorage.threads import in_thread, iterate_in_thread

REQUEST = contextvars.ContextVar[str]("request")


def test_the_call_runs_off_the_event_loop_with_the_callers_context() -> None:
    def seen() -> tuple[str, int]:
        return REQUEST.get(), threading.get_ident()

    async def main() -> tuple[str, int]:
        REQUEST.set("req-1")
        return await in_thread(seen)

    value, thread = asyncio.run(main())
    assert value == "req-1"
    assert thread != threading.get_ident()


def test_errors_reach_the_caller() -> None:
    def fail(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(in_thread(fail, "boom"))


def test_a_cancelled_caller_waits_for_the_call_it_started() -> None:
    """As anyio's run_sync: the cancellation goes on only after the running call has ended,
    so a body reader never has two writes of one upload in flight."""
    started, finished = threading.Event(), threading.Event()

    def slow_write() -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    async def main() -> bool:
        task = asyncio.create_task(in_thread(slow_write))
        assert await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return finished.is_set()

    assert asyncio.run(main())


def test_a_blocking_iterator_is_read_item_by_item_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()

    def chunks() -> Iterator[tuple[bytes, int]]:
        for chunk in (b"a", b"", b"c"):  # an empty chunk is an item, not the end
            yield chunk, threading.get_ident()

    async def main() -> list[tuple[bytes, int]]:
        return [item async for item in iterate_in_thread(chunks())]

    items = asyncio.run(main())
    assert [chunk for chunk, _ in items] == [b"a", b"", b"c"]
    assert all(thread != loop_thread for _, thread in items)
