"""The pool gauges follow the connections a process has checked out of its pool."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from moorage.metadata.sql import make_engine
from moorage.telemetry.db_pool import pool_sampler


def in_use() -> float | None:
    return REGISTRY.get_sample_value("moorage_db_pool_connections_in_use")


def test_connections_in_use_are_counted(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}", pool_size=2, max_overflow=1)
    sample = pool_sampler(engine, 3)
    assert REGISTRY.get_sample_value("moorage_db_pool_connections_max") == 3
    with engine.connect(), engine.connect():
        sample()
        assert in_use() == 2
    sample()
    assert in_use() == 0
    engine.dispose()
