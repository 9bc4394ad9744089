"""Fixtures for the e2e tests: a registry process and the client tools pointed at it.

``registry`` (session scope) starts ``moorage serve`` on a free loopback port with a temporary
data directory; with ``E2E_REGISTRY_CMD=distribution`` it starts Debian's ``docker-registry``
instead, which is how the tests themselves are checked. ``restartable_registry`` (function scope)
is a registry of its own that a test may stop, kill and start again on the same data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .support import RegistryServer, Tool, podman_tool, registry_kind


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer(registry_kind(), tmp_path_factory.mktemp("registry"))
    with server:
        yield server


@pytest.fixture
def restartable_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry for this test alone; ``.restart(kill=True)`` simulates a crash."""
    server = RegistryServer(registry_kind(), tmp_path_factory.mktemp("restartable-registry"))
    with server:
        yield server


@pytest.fixture
def http(registry: RegistryServer) -> Iterator[httpx.Client]:
    with registry.client() as client:
        yield client


@pytest.fixture
def skopeo(registry: RegistryServer) -> Tool:
    return Tool("skopeo", registry=registry)


@pytest.fixture
def umoci() -> Tool:
    return Tool("umoci")


@pytest.fixture
def podman(registry: RegistryServer, tmp_path: Path) -> Iterator[Tool]:
    """Podman (running as root) with throw-away storage for this test."""
    with podman_tool(registry, tmp_path) as tool:
        yield tool


@pytest.fixture
def buildah(registry: RegistryServer, tmp_path: Path) -> Tool:
    """Buildah with throw-away storage for this test."""
    return Tool(
        "buildah",
        global_args=(
            "--root",
            str(tmp_path / "buildah-root"),
            "--runroot",
            str(tmp_path / "buildah-runroot"),
            "--storage-driver",
            "vfs",
        ),
        registry=registry,
    )
