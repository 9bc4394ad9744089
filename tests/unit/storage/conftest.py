"""Fixtures for the BlobStore contract suite: one moto S3 server for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support_s3 import MotoServer, moto_server


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server
