"""What SQLite's write-ahead log holds, read from its index (the ``-shm`` file; its layout is
documented at https://www.sqlite.org/walformat.html), without touching the database."""

from __future__ import annotations

import struct
from pathlib import Path


def uncopied_pages(database: Path) -> tuple[int, int]:
    """(pages in the log, of which not yet copied into the database): the header's
    ``mxFrame`` (offset 16) and ``mxFrame - nBackfill`` (the checkpoint info, offset 96)."""
    header = Path(f"{database}-shm").read_bytes()[:136]
    (frames,) = struct.unpack_from("=I", header, 16)
    (copied,) = struct.unpack_from("=I", header, 96)
    return frames, frames - copied
