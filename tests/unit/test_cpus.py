"""workers: auto counts the CPUs the server may use: affinity, cgroup quota, and a cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moorage.cpus import AUTO_WORKERS_MAX, auto_workers, usable_cpus


def cpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))


def cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


def test_one_worker_per_cpu_of_the_affinity_mask(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpus(monkeypatch, 2)
    assert auto_workers(tmp_path / "absent") == 2
    assert auto_workers(cpu_max(tmp_path, "max 100000\n")) == 2


def test_a_cgroup_quota_lowers_the_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpus(monkeypatch, 16)
    assert usable_cpus(cpu_max(tmp_path, "150000 100000\n")) == 2  # --cpus 1.5: rounded up
    assert usable_cpus(cpu_max(tmp_path, "50000 100000\n")) == 1
    assert usable_cpus(cpu_max(tmp_path, "garbage\n")) == 16


def test_big_machines_are_capped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpus(monkeypatch, 96)
    assert usable_cpus(tmp_path / "absent") == 96
    assert auto_workers(tmp_path / "absent") == AUTO_WORKERS_MAX
