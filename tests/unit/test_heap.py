"""moorage/heap.py: a server's body buffers are reused, not faulted in afresh for every MiB."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A worker thread doing what a 1 GiB push does to the heap: ~400 KiB pieces, joined into
# ~1 MiB batches, a few MiB alive at a time, freed, 200 times (about 600 MiB in all); prints
# the minor page faults it took.
_CHURN = """
import resource, sys, threading
if sys.argv[1] == "keep":
    from moorage.heap import keep_freed_buffers
    assert keep_freed_buffers()  # glibc's mallopt is there
def churn():
    for _ in range(200):
        pieces = [bytes(400 * 1024) for _ in range(8)]
        batches = [b"".join(pieces[i : i + 3]) for i in range(0, 8, 3)]
        del pieces, batches
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
worker = threading.Thread(target=churn)
worker.start()
worker.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_body_buffers_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = _faults("default"), _faults("keep")
    # 600 MiB of buffers is ~150,000 pages: by default most are faulted in anew.
    assert default > 50_000
    assert kept < default / 10
