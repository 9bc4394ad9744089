"""The collector's idle priority (moorage/priority.py): set on a thread of its own, inherited by
what that thread starts, never by the thread that asked for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from moorage.priority import IOPRIO_IDLE, io_priority, run_lowered

pytestmark = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE") or io_priority() < 0, reason="Linux scheduling only"
)


def test_work_runs_at_idle_priority_and_the_caller_keeps_its_own() -> None:
    policy, io = os.sched_getscheduler(0), io_priority()

    seen = run_lowered(lambda: (os.sched_getscheduler(0), io_priority()))

    assert seen == (os.SCHED_IDLE, IOPRIO_IDLE)
    assert (os.sched_getscheduler(0), io_priority()) == (policy, io)


def test_a_process_it_starts_is_idle_from_its_first_instruction() -> None:
    probe = "import os; print(os.sched_getscheduler(0))"

    child = run_lowered(
        lambda: subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    )

    assert int(child.stdout) == os.SCHED_IDLE


def test_its_error_reaches_the_caller() -> None:
    def fails() -> None:
        raise LookupError("no")

    with pytest.raises(LookupError, match="no"):
        run_lowered(fails)
