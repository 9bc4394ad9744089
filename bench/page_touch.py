#!/usr/bin/env python3
"""Does this VM charge for touching memory the guest gave back? (bench/README.md, "1 GiB
pushes (session 13)".)

    .venv/bin/python bench/page_touch.py [--size-mib 1024] [--rounds 4] [--dir /tmp]

Writes a file of ``--size-mib`` into the page cache with 1 MiB ``write`` calls (as an upload
does), ``fdatasync``s and deletes it, then writes the next one, either at once or after a
pause. The freed page-cache pages go back to the kernel's free lists; with virtio-balloon free
page reporting (Firecracker, ``page_reporting`` here) the guest hands free 2 MiB+ blocks to the
host after a short delay, and the host unmaps them: the next write into them takes a fault in
the host per page, which the guest sees only as a slow copy (``copy_folio_from_iter_atomic``).
Printed per write: seconds in ``write``, the process's system CPU, and how many KiB the guest
reported to the host meanwhile (``/sys/module/page_reporting/parameters/reported_kib``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

MiB = 1 << 20
REPORTED = Path("/sys/module/page_reporting/parameters/reported_kib")


def reported_kib() -> int:
    try:
        return int(REPORTED.read_text())
    except (OSError, ValueError):
        return -1


def write_file(path: Path, size: int, buffer: bytes) -> tuple[float, float]:
    """(wall seconds in write calls, system CPU seconds) writing ``size`` bytes to ``path``
    (never synced: the caller deletes it, and a deleted file's dirty pages are dropped)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        t0 = time.perf_counter()
        for _ in range(size // len(buffer)):
            os.write(fd, buffer)
        wall = time.perf_counter() - t0
        stime = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0
    finally:
        os.close(fd)
    return wall, stime


def hand_back_warm(directory: Path, size: int) -> None:
    """Write ``size`` bytes to a scratch file and delete it: its page-cache pages go back to
    the free lists backed by the host, so a write of up to ``size`` bytes in the next second
    or so (before the guest reports them) finds no unmapped memory. Slow while it runs (it
    takes the host's faults instead of the caller); push.py --warm-pages runs it untimed."""
    path = directory / f"page-touch-{os.getpid()}.warm"
    try:
        write_file(path, size, bytes(MiB))
    finally:
        path.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--pause", type=float, default=6.0, help="seconds after a delete")
    ap.add_argument("--dir", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    size = args.size_mib * MiB
    buffer = os.urandom(MiB)
    path = args.dir / f"page-touch-{os.getpid()}.bin"
    print(f"load average {os.getloadavg()[0]:.2f}; {args.size_mib} MiB per write; "
          f"reported_kib {reported_kib()}")  # fmt: skip
    deleted_at = reported_kib()
    try:
        for r in range(args.rounds):
            for pause in (0.0, args.pause):
                time.sleep(pause)
                since_delete = reported_kib() - deleted_at
                wall, stime = write_file(path, size, buffer)
                path.unlink()
                deleted_at = reported_kib()
                print(
                    f"round {r + 1}, written {pause:.0f} s after the last delete: "
                    f"{size / MiB / wall:6.0f} MiB/s in write(), system CPU {stime:.2f} s; "
                    f"given to the host between the delete and the write: "
                    f"{since_delete // 1024} MiB",
                    flush=True,
                )
    finally:
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
