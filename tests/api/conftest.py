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
from tests.support_s3 import MotoServer


@pytest.fixture
def backend() -> str:
    """Where blobs are kept; test modules about blobs override this to run on S3 too."""
    return "filesystem"


@pytest.fixture
def storage(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The app's ``storage`` settings (overrides for load_settings)."""
    settings: dict[str, Any] = {"data_dir": tmp_path / "data"}
    if backend != "filesystem":
        moto: MotoServer = request.getfixturevalue("moto")
        settings.update(moto.storage_overrides(redirect=backend == "s3-redirect"))
    return settings


@pytest.fixture
def make_client(
    storage: dict[str, Any], backend: str, request: pytest.FixtureRequest
) -> ClientFactory:
    """Open a client on a fresh app over the same data dir (a "restart" each time)."""
    # Redirects to the object store leave the app: they go over the network to moto.
    mounts: dict[str, httpx.AsyncBaseTransport] = {}
    if backend != "filesystem":
        moto: MotoServer = request.getfixturevalue("moto")
        mounts[moto.endpoint] = httpx.AsyncHTTPTransport()

    @asynccontextmanager
    async def factory(
        peer: tuple[str, int] = ("127.0.0.1", 123), **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        """``peer``: the address the app sees the requests come from."""
        overrides.setdefault("storage", storage)
        app = create_app(load_settings(**overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=peer)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://registry",
                mounts=mounts,
                follow_redirects=bool(mounts),
            ) as c:
                yield c

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c
