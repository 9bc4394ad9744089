"""Fixtures for the OCI Distribution Spec conformance suite.

Two ways to run it:

* In process (the default): each test gets a fresh Moorage app, built by
  ``create_app(load_settings(storage={"data_dir": tmp_path}))``, run inside its lifespan and
  reached through ``httpx.ASGITransport`` at ``http://registry.test``.
* Against any running registry: set ``CONFORMANCE_URL`` (for example
  ``CONFORMANCE_URL=http://127.0.0.1:5000 pytest tests/conformance``). Every test then talks
  real HTTP to that registry and works in repositories of its own (``unique_repo``), so the
  registry can be shared and need not be empty. It must allow deletes for the content
  management tests. With ``CONFORMANCE_USER`` and ``CONFORMANCE_PASSWORD`` set, the suite logs
  in as that user through the Docker token flow (``token_auth.py``), as docker and podman do;
  ``CONFORMANCE_CA_FILE`` names a PEM bundle to verify an https registry against.

Tests marked ``in_process_only`` need to configure the registry themselves (for example with
deletion turned off). When ``CONFORMANCE_URL`` is set they are *deselected*, not skipped: they
show up in pytest's "deselected" count and never count as passing.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .oci_client import unique_repo
from .token_auth import DockerTokenAuth

CONFORMANCE_URL = os.environ.get("CONFORMANCE_URL", "").strip() or None
CONFORMANCE_USER = os.environ.get("CONFORMANCE_USER", "").strip() or None
CONFORMANCE_PASSWORD = os.environ.get("CONFORMANCE_PASSWORD", "")
CONFORMANCE_CA_FILE = os.environ.get("CONFORMANCE_CA_FILE", "").strip() or None
IN_PROCESS_BASE_URL = "http://registry.test"

RegistryFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "in_process_only: needs a registry configured by the test itself; deselected when "
        "CONFORMANCE_URL points the suite at an external registry",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CONFORMANCE_URL is None:
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        token_run = callspec is not None and callspec.params.get("auth_mode") != "open"
        in_process = item.get_closest_marker("in_process_only") is not None
        (dropped if in_process or token_run else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@asynccontextmanager
async def _remote_registry(url: str) -> AsyncIterator[httpx.AsyncClient]:
    auth = None
    if CONFORMANCE_USER is not None:
        auth = DockerTokenAuth(CONFORMANCE_USER, CONFORMANCE_PASSWORD)
    verify: ssl.SSLContext | bool = True
    if CONFORMANCE_CA_FILE is not None:
        verify = ssl.create_default_context(cafile=CONFORMANCE_CA_FILE)
    async with httpx.AsyncClient(
        base_url=url, timeout=30.0, follow_redirects=True, auth=auth, verify=verify
    ) as client:
        yield client


# The user the suite logs in as when it runs with the token flow on.
TOKEN_USER, TOKEN_PASSWORD = "conformance", "conformance-password"


@pytest.fixture(scope="session")
def htpasswd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from moorage.auth.htpasswd import add_user

    path = tmp_path_factory.mktemp("conformance-auth") / "htpasswd"
    add_user(path, TOKEN_USER, TOKEN_PASSWORD)
    return path


@pytest.fixture(params=["open", "token-auth", "open-postgres"])
def auth_mode(request: pytest.FixtureRequest) -> str:
    """Each in-process test runs three times: with no auth, with htpasswd + the token flow
    (the client doing what docker and podman do), and with no auth on PostgreSQL instead of
    SQLite. Against CONFORMANCE_URL, only as configured."""
    mode: str = request.param
    return mode


@asynccontextmanager
async def _in_process_registry(
    data_dir: Path, client_auth: httpx.Auth | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    # Imported here so the suite can run against CONFORMANCE_URL without the app importable.
    from moorage.app import create_app
    from moorage.config import load_settings

    storage = {"data_dir": data_dir, **overrides.pop("storage", {})}
    app = create_app(load_settings(storage=storage, **overrides))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url=IN_PROCESS_BASE_URL,
            timeout=30.0,
            follow_redirects=True,
            auth=client_auth,
        ) as client,
    ):
        yield client


@pytest.fixture
def database_url(auth_mode: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The registry's database: "" (SQLite in its data dir) or a fresh PostgreSQL database."""
    if auth_mode != "open-postgres":
        yield ""
        return
    with request.getfixturevalue("postgres").fresh_database() as url:
        yield url


@pytest.fixture
def registry_factory(
    tmp_path: Path, auth_mode: str, htpasswd_file: Path, database_url: str
) -> RegistryFactory:
    """Build a registry client; keyword arguments are settings overrides (in process only).

    ``async with registry_factory(delete_enabled=False) as client: ...``
    """

    def factory(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        if CONFORMANCE_URL is not None:
            if overrides:
                raise RuntimeError("settings overrides need the in-process registry")
            return _remote_registry(CONFORMANCE_URL)
        data_dir = tmp_path / "registry-data"
        data_dir.mkdir(exist_ok=True)
        if database_url:
            overrides.setdefault("database", {"url": database_url})
        if auth_mode != "token-auth":
            return _in_process_registry(data_dir, **overrides)
        return _in_process_registry(
            data_dir,
            DockerTokenAuth(TOKEN_USER, TOKEN_PASSWORD),
            auth={"htpasswd": htpasswd_file},
            **overrides,
        )

    return factory


@pytest.fixture
async def registry(registry_factory: RegistryFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` whose base URL is the registry under test."""
    async with registry_factory() as client:
        yield client


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test (and to this run)."""
    return unique_repo(request.node.originalname)
