"""A transaction PostgreSQL aborts for a concurrent one is tried again; never a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.conflicts import ATTEMPTS, retry_conflicts


class _PgError(Exception):
    """What psycopg raises: the SQLSTATE as ``sqlstate``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _failing(errors: list[Exception]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def transaction() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "committed"

    return calls, transaction


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT INTO tags", {}, _PgError("23503")),  # foreign key
        IntegrityError("INSERT INTO manifests", {}, _PgError("23505")),  # unique
        OperationalError("UPDATE", {}, _PgError("40P01")),  # deadlock
        OperationalError("UPDATE", {}, _PgError("40001")),  # serialization
    ],
)
def test_a_conflict_is_tried_again(error: Exception) -> None:
    calls, transaction = _failing([error])
    assert retry_conflicts(transaction, "the push") == "committed"
    assert len(calls) == 2


def test_conflicts_every_time_are_a_503_with_retry_after() -> None:
    conflict = IntegrityError("INSERT INTO tags", {}, _PgError("23503"))
    calls, transaction = _failing([conflict] * ATTEMPTS)
    with pytest.raises(RegistryError) as info:
        retry_conflicts(transaction, "the manifest push")
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert info.value.headers == {"Retry-After": "1"}
    assert len(calls) == ATTEMPTS


def test_other_database_errors_are_not_retried() -> None:
    other = IntegrityError("INSERT", {}, _PgError("23502"))  # not null: a bug, not a race
    calls, transaction = _failing([other])
    with pytest.raises(IntegrityError):
        retry_conflicts(transaction, "the push")
    assert len(calls) == 1
