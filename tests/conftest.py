"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from moorage.services import liveness
from tests.support_pg import PostgresServer, postgres_server
from tests.support_s3 import MotoServer, moto_server


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto S3 server (from PyPI's moto[server]) on a loopback port for the session."""
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server (Debian's postgresql) on a loopback port for the
    session; tests take a database of their own with ``postgres.fresh_database()``."""
    with postgres_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _liveness_of_this_test_only() -> Iterator[None]:
    """An app built in a test points this process's liveness at its database (app.py: one
    registry per process in production); the next test must not judge lease holders against
    a database that is gone (it answered 503 UNAVAILABLE in tests that ran after one)."""
    yield
    liveness.PROCESS.forget()
