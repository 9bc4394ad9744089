"""What SQLite's write-ahead log holds, read from its index (the ``-shm`` file; its layout is
documented at https://www.sqlite.org/walformat.html), without touching the database."""

from __future__ import annotations

import struct
import time
from pathlib import Path


def uncopied_pages(database: Path) -> tuple[int, int]:
    """(pages in the log, of which not yet copied into the database): the header's
    ``mxFrame`` (offset 16) and ``mxFrame - nBackfill`` (the checkpoint info, offset 96)."""
    header = Path(f"{database}-shm").read_bytes()[:136]
    (frames,) = struct.unpack_from("=I", header, 16)
    (copied,) = struct.unpack_from("=I", header, 96)
    return frames, frames - copied


def wait_until_copied(database: Path, timeout: float = 10.0) -> tuple[int, int]:
    """:func:`uncopied_pages` once nothing is left to copy, or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while uncopied_pages(database)[1] and time.monotonic() < deadline:
        time.sleep(0.01)
    return uncopied_pages(database)
