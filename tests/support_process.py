"""A Python script run in a process of its own, for tests of what other processes see (a
worker beside the collector, a writer waiting for the lock)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def python_process(script: str, *args: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    """``python -c script args...`` with text pipes, once it has printed the line ``ready``;
    killed on the way out, whatever happened."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == ready
        yield process
    finally:
        process.kill()
        process.wait(10)
