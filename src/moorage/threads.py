"""Blocking calls (the services: SQL, files, hashing) from a request of the API or the web UI,
on a worker thread: one pool of 40 per process for both.

Starlette's ``run_in_threadpool`` goes through anyio: a sniffio lookup of the async library, a
capacity limiter, a cancel scope and a Python ``queue.Queue`` (a Condition) per call. On a
4 KiB push that was a tenth of the event loop's time (py-spy, 2026-12-06). This is the same
contract on a plain :class:`~concurrent.futures.ThreadPoolExecutor` (a C ``SimpleQueue``):

- the call sees the caller's context variables (the request id and actor the events it
  records carry: :mod:`moorage.events.context`), as with anyio;
- as many calls at once as anyio's default limiter allowed (40 per process);
- a cancelled caller waits for a call that already started to end before the cancellation
  goes on (anyio's default): a body reader that is cancelled never leaves a write running
  while the next one starts (:func:`moorage.api.body.stream_into`). A call not yet started
  is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# anyio's default thread limiter, which Starlette's run_in_threadpool used before.
MAX_THREADS = 40
_executor = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="moorage-call")


async def in_thread(call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``call(*args, **kwargs)`` on a worker thread, in a copy of the caller's context."""
    context = contextvars.copy_context()
    job: Future[R] = _executor.submit(functools.partial(context.run, call, *args, **kwargs))
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        # Cancelling the wrapper cancelled ``job`` if it had not started; one that is running
        # goes on, and the cancellation waits for it, as anyio's did.
        while not job.done():
            try:
                await asyncio.wrap_future(job)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break
        raise


def _next_item(iterator: Iterator[T]) -> list[T]:
    """The iterator's next item in a list, or an empty list at its end (a StopIteration must
    not cross a future)."""
    for item in iterator:
        return [item]
    return []


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """A blocking iterator's items, each fetched by :func:`in_thread` (as Starlette's
    ``iterate_in_threadpool``, on the same pool as every other blocking call)."""
    while item := await in_thread(_next_item, iterator):
        yield item[0]
