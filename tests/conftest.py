"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support_s3 import MotoServer, moto_server


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto S3 server (from PyPI's moto[server]) on a loopback port for the session."""
    with moto_server() as server:
        yield server
