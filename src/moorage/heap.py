"""Keep freed request buffers in the process instead of handing them back to the kernel.

A 1 GiB push passes through the server as ~400 KiB pieces from granian and 1 MiB batches
(api/body.py): allocated, filled, hashed, written and freed, a few MiB live at a time. glibc's
malloc gives freed memory at the top of a heap back to the kernel once more than a threshold
(about twice the largest recent block, ~2 MiB here) is free there, and serves blocks above its
mmap threshold with fresh mappings: so each MiB was faulted in anew, page by page (35,000-70,000
minor faults per GiB pushed, and on this Firecracker VM memory given back may be handed on to
the host, whose faults cost more still). With the thresholds raised, the same few MiB are
reused: a few hundred to a few thousand faults per GiB, about 10-20% less system CPU
(bench/README.md, "1 GiB pushes (session 13)"). The price is the memory of the busiest moment,
kept: ~20 MiB per server on the 1 GiB pushes measured.
"""

from __future__ import annotations

import ctypes

# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Free memory at a heap's top is given back only beyond this.
TRIM_THRESHOLD = 64 * 1024 * 1024
# Blocks below this come from the heaps, where freed ones are reused (glibc's own ceiling for
# the threshold it adjusts by itself, which a fixed trim threshold turns off).
MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_freed_buffers() -> bool:
    """Raise glibc malloc's trim and mmap thresholds for this process (and the processes it
    forks later). False, changing nothing, where there is no glibc ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
