"""The directory where each worker process writes its metric values (prometheus-client's
multiprocess mode). prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is first
imported, so this module must not import it: ``moorage serve`` calls
:func:`prepare_multiprocess_dir` before anything does, and before granian starts the workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Callable[[], None]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory; return its clean-up.

    An operator's own directory is emptied (files left by an earlier run would be added to
    this one's) and kept; otherwise a fresh private one is made and removed at the end.
    """
    given = os.environ.get(MULTIPROCESS_VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return lambda: None
    created = tempfile.mkdtemp(prefix="moorage-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = created
    return lambda: shutil.rmtree(created, ignore_errors=True)
