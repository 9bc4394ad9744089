"""The garbage collector's CPU and I/O priority: idle, so that it runs when clients leave a
core (and the disk) free, not when they need it (docs/gc.md, "How it stays out of the way").

Linux keeps both per thread and a new process inherits them from the thread that forks it, so
what is lowered is a thread that does nothing else: an unprivileged thread may not leave
``SCHED_IDLE`` for ``SCHED_OTHER`` with ``RLIMIT_NICE`` at 0, the default, so a thread that must
keep its priority (a server worker's, the collector's :class:`WriterThread`) is never the one
lowered. ``moorage gc`` runs its collection (building the registry, with its imports, included)
in a throwaway lowered thread (:func:`run_lowered`), so that the process's main thread, and a
test calling the command in-process, keep theirs; the server's collector process lowers its
main thread as its first act (gc_child.py). Both make their :class:`WriterThread` first.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# ioprio_set(2): not wrapped by Python's os module. x86_64 and aarch64 numbers.
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
_SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}
_IOPRIO_WHO_PROCESS = 1  # with who=0: the calling thread
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13
IOPRIO_IDLE = _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT


def _syscall(table: dict[str, int], *args: int) -> int:
    number = table.get(os.uname().machine)
    if number is None:
        return -1
    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.syscall(number, *args)
    return result


def io_priority(pid: int = 0) -> int:
    """The I/O priority (ioprio_get) of thread ``pid`` (0: the calling one), -1 if unknown."""
    return _syscall(_SYS_IOPRIO_GET, _IOPRIO_WHO_PROCESS, pid)


def lower_this_thread() -> list[str]:
    """Put the calling thread (and what it starts from now on) at idle CPU and I/O priority:
    ``SCHED_IDLE`` (it gets a core only when no other thread wants it, and never preempts
    one) and the idle I/O class (its reads, writes and fsyncs are dispatched when no one
    else's are waiting, by schedulers that know classes: mq-deadline, bfq; ``none`` ignores
    it). Best effort: what could be set, by name; a system without it is left as it is."""
    done = []
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            done.append("cpu")
        except OSError:
            pass
    if _syscall(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE) == 0:
        done.append("io")
    return done


def run_lowered(work: Callable[[], T]) -> T:
    """``work()`` in a thread of its own that lowered itself first (:func:`lower_this_thread`),
    its result or its exception passed back: what ``work`` starts (a process, threads)
    inherits the idle priority, and the calling thread keeps its own."""
    results: list[T] = []
    errors: list[BaseException] = []

    def lowered() -> None:
        lower_this_thread()
        try:
            results.append(work())
        except BaseException as error:  # raised again in the caller
            errors.append(error)

    # A daemon: if the caller is interrupted (Ctrl-C), the process may exit without it.
    thread = threading.Thread(target=lowered, name="moorage-gc-lowered", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def _nothing() -> None:
    pass


class WriterThread:
    """A thread that keeps the priority of the thread that made it (normal, made before that
    one lowered itself), to run the collector's write transactions on: on SQLite each holds
    the writer lock, and an idle thread holding it is kept off a CPU by any busy request
    thread, while every push waits for the lock (priority inversion: holds of 40-75 ms
    measured on a busy machine, bench/README.md). Its transactions are then not preempted
    for long; they only start when the idle collector hands them over, that is when a core
    was free. ``writer(work)`` runs ``work`` there and returns its result. A thread started
    from there (the collector's heartbeat, on a shared database) keeps that priority too."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moorage-gc-writer")
        # Its thread starts now, at this thread's priority (it would be made on first use,
        # by then from a lowered thread, and inherit that).
        self._pool.submit(_nothing).result()

    def __call__(self, work: Callable[[], T]) -> T:
        return self._pool.submit(work).result()

    def close(self) -> None:
        self._pool.shutdown()
