"""How many worker processes ``workers: auto`` (the default) starts: one per CPU this process
may use, capped.

A worker is one Python process with one event loop, so it does little more than one core's work:
on a 2-core machine, one worker leaves a core idle under many small requests (manifest GETs, blob
HEADs, small pushes), while one big transfer is one request on one worker either way
(bench/README.md, "Default workers"). The cap keeps a large host from opening more database
pools than a stock PostgreSQL accepts (each worker has a pool of its own, up to 48 connections;
docs/configuration.md#connections); beyond it, set ``workers`` by hand.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

AUTO_WORKERS_MAX = 8
# cgroup v2: "<quota> <period>" in microseconds, or "max <period>" for no limit.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _cgroup_cpu_limit(cpu_max: Path) -> int | None:
    """CPUs a cgroup v2 quota allows (``docker run --cpus 2``), rounded up; None if unlimited
    or unknown."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cpus(cpu_max: Path | None = None) -> int:
    """CPUs this process may run on: its affinity mask (taskset, a container's cpuset), lowered
    to its cgroup's CPU quota when that is smaller."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(CGROUP_CPU_MAX if cpu_max is None else cpu_max)
    return max(1, min(cpus, limit) if limit is not None else cpus)


def auto_workers(cpu_max: Path | None = None) -> int:
    """The number of workers ``workers: auto`` means."""
    return min(usable_cpus(cpu_max), AUTO_WORKERS_MAX)
