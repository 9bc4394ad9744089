"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
