"""One SQLite writer at a time, across threads and worker processes, without polling.

SQLite serialises writers itself, but a writer that finds the database locked sleeps in its busy
handler (up to 100 ms a nap) and tries again: under a burst of small pushes that gave tail
latencies near a second. Here threads queue on a mutex and processes on an ``flock`` of a file
beside the database, and the kernel wakes the next writer the moment the last one is done.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


class WriterLock:
    def __init__(self, database: Path | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = None if database is None else database.with_name(database.name + ".writer")
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
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
