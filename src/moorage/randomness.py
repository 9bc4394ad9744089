"""Random ids from the kernel's CSPRNG, read 4 KiB at a time.

``os.urandom`` (and ``uuid.uuid4``, ``secrets``) releases the GIL around its ``getrandom``
call. On the event loop's thread, while worker threads wait for the GIL (16 pushes at once),
that hands the GIL to one of them, and the loop waits for it to come back: 30 us per call
instead of 0.3 (measured on the 4 KiB push, 2026-12-06), three calls per push (two request
ids, one upload id), each a pair of context switches. Reading the same bytes in 4 KiB blocks
makes that one wait per 256 ids. They are the kernel's bytes as before: ids stay as
unguessable as ``os.urandom``'s.
"""

from __future__ import annotations

import os
import threading

_BLOCK = 4096

_lock = threading.Lock()
_block = b""
_offset = 0


def random_hex(nbytes: int = 16) -> str:
    """``nbytes`` random bytes (at most 4096) as lower-case hex; safe from any thread."""
    global _block, _offset
    with _lock:
        end = _offset + nbytes
        if end > len(_block):
            _block, _offset, end = os.urandom(_BLOCK), 0, nbytes
        piece = _block[_offset:end]
        _offset = end
    return piece.hex()


def _forget_block() -> None:
    """In a forked child (granian's workers): never hand out bytes the parent or a sibling
    may hand out too; and a lock another thread held at the fork would never be released."""
    global _lock, _block, _offset
    _lock, _block, _offset = threading.Lock(), b"", 0


os.register_at_fork(after_in_child=_forget_block)
