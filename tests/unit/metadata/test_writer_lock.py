"""SQLite's writer lock: whether anyone waits for its holder (the garbage collector asks, to
end its transaction early for a waiting push)."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from moorage.metadata.writer_lock import WriterLock
from tests.support_process import python_process

# A writer in another process: it takes the lock, says so on stdout, and waits for stdin.
_OTHER_WRITER = """
import sys
from pathlib import Path
from moorage.metadata.writer_lock import WriterLock
print("waiting", flush=True)
with WriterLock(Path(sys.argv[1])):
    print("holding", flush=True)
    sys.stdin.readline()
"""


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def _other_process(database: Path) -> AbstractContextManager[subprocess.Popen[str]]:
    return python_process(_OTHER_WRITER, str(database), ready="waiting")


def _enter_and_leave(lock: WriterLock) -> None:
    with lock:
        pass


def test_nobody_waits_for_a_lone_holder(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "moorage.db")
    with lock:
        assert not lock.others_waiting()
    with lock:  # and again: the waiting mark of the first entry is gone
        assert not lock.others_waiting()


def test_a_thread_waiting_in_the_same_process_is_seen(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "moorage.db")
    got = threading.Event()

    def other() -> None:
        with lock:
            got.set()

    with lock:
        thread = threading.Thread(target=other)
        thread.start()
        assert _eventually(lock.others_waiting)
        assert not got.is_set()
    thread.join(10)
    assert got.is_set()
    with lock:
        assert not lock.others_waiting()


def test_a_writer_waiting_in_another_process_is_seen_and_forgotten_when_it_has_the_lock(
    tmp_path: Path,
) -> None:
    database = tmp_path / "moorage.db"
    lock = WriterLock(database)
    lock.__enter__()
    held = True
    try:
        with _other_process(database) as other:
            assert _eventually(lock.others_waiting)
            lock.__exit__(None, None, None)
            held = False
            assert other.stdout is not None
            assert other.stdout.readline().strip() == "holding"
            # It holds the lock now and waits for nobody: its waiting mark is gone.
            assert not lock.others_waiting()
            other.communicate("\n", timeout=10)
    finally:
        if held:
            lock.__exit__(None, None, None)
    with lock:
        assert not lock.others_waiting()


def test_a_waiting_process_that_dies_leaves_no_mark(tmp_path: Path) -> None:
    database = tmp_path / "moorage.db"
    lock = WriterLock(database)
    with lock, _other_process(database) as other:
        assert _eventually(lock.others_waiting)
        os.kill(other.pid, signal.SIGKILL)
        other.wait(10)
        assert _eventually(lambda: not lock.others_waiting())


def test_an_in_memory_databases_lock_has_no_file_and_counts_threads_only() -> None:
    lock = WriterLock(None)
    with lock:
        assert not lock.others_waiting()
        thread = threading.Thread(target=_enter_and_leave, args=(lock,))
        thread.start()
        assert _eventually(lock.others_waiting)
    thread.join(10)
    with lock:
        assert not lock.others_waiting()


def test_a_failure_to_mark_a_waiter_leaves_the_lock_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where open-file-description locks are refused, a writer still gets the lock (only this
    process's waiters are seen then), and nothing stays counted or held."""
    lock = WriterLock(tmp_path / "moorage.db")

    def refused(fd: int, command: int, request: bytes) -> bytes:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(fcntl, "fcntl", refused)
    with lock:
        assert not lock.others_waiting()
    monkeypatch.undo()
    with lock:
        assert not lock.others_waiting()


def test_threads_that_first_enter_together_share_one_lock_and_leave_it_free(
    tmp_path: Path,
) -> None:
    """The file is opened once, by the first to arrive: two threads that each opened it would
    each flock their own description, and one would release the other's, leaving it locked
    for good (every later writer would hang)."""
    lock = WriterLock(tmp_path / "moorage.db")
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        for _ in range(50):
            with lock:
                pass

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    done = threading.Event()

    def last() -> None:
        with lock:
            done.set()

    threading.Thread(target=last, daemon=True).start()
    assert done.wait(5), "the lock was left held"
