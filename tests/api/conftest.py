"""In-process API tests: the real app (filesystem + SQLite in a temp dir) over ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from moorage.app import create_app
from moorage.config import load_settings
from tests.api.support import ClientFactory


@pytest.fixture
def make_client(tmp_path: Path) -> ClientFactory:
    """Open a client on a fresh app over the same data dir (a "restart" each time)."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        overrides.setdefault("storage", {"data_dir": tmp_path / "data"})
        app = create_app(load_settings(**overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
                yield c

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c
