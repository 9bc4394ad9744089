"""Transactions that PostgreSQL aborts because of a concurrent one, tried again.

On PostgreSQL (READ COMMITTED) a write can meet a concurrent transaction it cannot be ordered
with: a deadlock (40P01), a serialization failure (40001), or a row it relied on deleted or
inserted under it, surfacing as a foreign-key (23503) or unique (23505) violation. Each aborts
the whole transaction, so it can simply run again, and the second time it sees the other's
outcome. A client must never get a 500 for that: after a few attempts it is a 503 with
Retry-After. SQLite has one writer at a time and never gets here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from moorage.errors import ErrorCode, RegistryError

log = logging.getLogger("moorage.metadata")

T = TypeVar("T")

#: SQLSTATEs of a transaction aborted by a concurrent one.
CONFLICTS = frozenset({"40001", "40P01", "23503", "23505"})
ATTEMPTS = 3


def is_conflict(error: DBAPIError) -> bool:
    state = getattr(error.orig, "sqlstate", None)  # psycopg 3
    return state in CONFLICTS


def retry_conflicts(transaction: Callable[[], T], what: str) -> T:
    """``transaction()`` (one whole transaction), again while it fails with a conflict."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return transaction()
        except DBAPIError as error:
            if not is_conflict(error):
                raise
            log.info("%s met a concurrent change (attempt %d): %s", what, attempt, error.orig)
            last = error
    raise RegistryError(
        ErrorCode.UNAVAILABLE,
        f"{what} conflicted with concurrent changes {ATTEMPTS} times; try again",
        headers={"Retry-After": "1"},
    ) from last
