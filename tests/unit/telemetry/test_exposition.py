"""A worker that died (and was replaced) stops counting in the live gauges: its file goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from moorage.telemetry.exposition import forget_dead_processes


def test_the_live_gauges_of_dead_processes_are_forgotten(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead, alive = int(gone.stdout), os.getpid()
    for pid in (dead, alive):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")  # counters outlive their process
    forget_dead_processes(str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{alive}.db", f"counter_{alive}.db", f"counter_{dead}.db"]
    )
