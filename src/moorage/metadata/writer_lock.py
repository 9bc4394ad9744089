"""One SQLite writer at a time, across threads and worker processes, without polling.

SQLite serialises writers itself, but a writer that finds the database locked sleeps in its busy
handler (up to 100 ms a nap) and tries again: under a burst of small pushes that gave tail
latencies near a second. Here threads queue on a mutex and processes on an ``flock`` of a file
beside the database, and the kernel wakes the next writer the moment the last one is done.

A holder can also ask whether anyone waits for it (:meth:`WriterLock.others_waiting`): the
garbage collector ends its transaction early then, so a push waits for one candidate's review
and a commit rather than a whole batch. A waiting process says so with a shared open-file-
description lock (``F_OFD_SETLK``, Linux 3.15+) on the same file, which the holder tests with
``F_OFD_GETLK``: both are single system calls that never block, and the kernel drops the lock
of a process that dies. (Linux's ``flock`` and OFD locks on a local file do not interact, so
one file serves.) Where OFD locks are missing, only this process's waiting threads are seen.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

# struct flock (Linux, 64-bit): l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
_FLOCK = "hhqqi4x"
# The byte the waiters lock shared; nobody takes the lock on it exclusive, it is only tested.
_WAITING = (0, 1)
_OFD_LOCKS = hasattr(fcntl, "F_OFD_SETLK")


def _ofd(fd: int, command: int, kind: int) -> int:
    """One OFD lock request on the waiting byte; the answer's l_type (for ``F_OFD_GETLK``:
    ``F_UNLCK`` when no other open file description holds a lock that conflicts)."""
    start, length = _WAITING
    request = struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0)
    answer = fcntl.fcntl(fd, command, request)
    return int(struct.unpack(_FLOCK, answer)[0])


class WriterLock:
    def __init__(self, database: Path | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = None if database is None else database.with_name(database.name + ".writer")
        self._fd: int | None = None
        # This process's threads between asking for the lock and getting it; while there are
        # any, its waiting byte is locked shared (see the module's docstring).
        self._waiting = 0
        self._waiting_guard = threading.Lock()
        self._shared_waiting = _OFD_LOCKS

    def _count_waiting(self, change: int) -> None:
        """Count a waiter in (+1) or out (-1): the count changes only once the shared mark
        agrees with it, so a failure leaves neither half-done."""
        with self._waiting_guard:
            if self._path is not None and self._fd is None:
                # Opened once, under the guard: two threads that each opened it would flock
                # different descriptions, and one would unlock the other's.
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fd = self._fd
            if fd is not None and self._shared_waiting:
                if change > 0 and self._waiting == 0:
                    try:
                        _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK)
                    except OSError as error:  # no OFD locks here (EINVAL): this process only
                        self._shared_waiting = False
                        log.warning("writer lock: waiters of other processes unseen: %s", error)
                elif change < 0 and self._waiting == 1:
                    _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK)
            self._waiting += change

    def others_waiting(self) -> bool:
        """Whether another writer (a thread of this process, or another process) is waiting
        for the lock. Meant for its holder; a snapshot, never blocks."""
        if self._waiting > 0:
            return True
        fd = self._fd
        if fd is None or not self._shared_waiting:
            return False
        return _ofd(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK) != fcntl.F_UNLCK

    def __enter__(self) -> None:
        self._count_waiting(+1)  # if this fails, nothing is held
        held = False
        try:
            self._thread_lock.acquire()
            try:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise
            held = True
        finally:
            try:
                self._count_waiting(-1)
            except BaseException:
                # Raising from __enter__ means no __exit__: let go first, or every writer of
                # every process would wait for good.
                if held:
                    self.__exit__(None, None, None)
                raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()
