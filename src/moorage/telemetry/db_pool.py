"""The database pool's gauges: connections in use, and how many the pool may hold.

Read from SQLAlchemy's own count once a second (and before a scrape) rather than updated on
every checkout: a multiprocess gauge update costs a few microseconds, reading the count nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from moorage.telemetry import metrics


def pool_sampler(engine: Engine, capacity: int) -> Callable[[], None]:
    """Set the pool-size gauge to ``capacity`` (this process's pool_size + max_overflow) and
    return a function that sets the in-use gauge from ``engine``'s pool. Both SQLite and
    PostgreSQL engines are built with a QueuePool (moorage.metadata.sql.make_engine)."""
    metrics.DB_POOL_MAX.set(capacity)
    pool = engine.pool

    def sample() -> None:
        if isinstance(pool, QueuePool):
            metrics.DB_POOL_IN_USE.set(pool.checkedout())

    return sample
