"""Fixtures for the UI page tests: the real app (SQLite, filesystem) with htpasswd users and a
policy, seeded with images pushed through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from moorage.app import create_app
from moorage.auth.htpasswd import add_user
from moorage.config import load_settings
from tests.api.support import OCI_MANIFEST, push_image
from tests.web.support import (
    HOSTILE,
    POLICY,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    USERS,
    manifest_size,
    password,
    push_config_image,
    push_index,
    push_referrer,
)


@dataclass
class Seeded:
    app: Starlette
    htpasswd: Path
    digests: dict[str, str]
    data_dir: Path


@pytest.fixture
def auth_files(tmp_path: Path) -> dict[str, Path]:
    htpasswd = tmp_path / "htpasswd"
    for user in USERS:
        add_user(htpasswd, user, password(user))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"htpasswd": htpasswd, "policy_file": policy}


async def seed(api: httpx.AsyncClient) -> dict[str, str]:
    digests: dict[str, str] = {}
    digests["public"], _ = await push_image(api, "public/hello", "v1", seed=b"p")
    digests["secret"], _ = await push_image(api, "secret/vault", "v1", seed=b"s")
    digests["v1"] = await push_config_image(
        api,
        "team/app",
        "v1",
        {
            "os": "linux",
            "architecture": "amd64",
            "config": {
                "Env": ["PATH=/usr/bin", "MODE=prod"],
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve"],
                "Labels": {"org.opencontainers.image.title": "app"},
            },
            "history": [{"created_by": "COPY app /bin/app"}],
        },
        [b"layer-one" * 100, b"layer-two"],
    )
    digests["hostile"] = await push_config_image(
        api,
        "team/app",
        "hostile",
        {
            "os": "linux",
            "architecture": "arm64",
            "config": {"Labels": {HOSTILE: HOSTILE}, "Env": [HOSTILE], "Cmd": [HOSTILE]},
            "history": [{"created_by": HOSTILE, "comment": HOSTILE}],
        },
        [b"hostile-layer"],
        annotations={"note": HOSTILE},
    )
    arm = await push_config_image(
        api, "team/app", "arm-only", {"os": "linux", "architecture": "arm64"}, [b"arm"]
    )
    amd = digests["v1"]
    digests["multi"] = await push_index(
        api,
        "team/app",
        "multi",
        [
            (amd, "amd64", await manifest_size(api, "team/app", amd)),
            (arm, "arm64", await manifest_size(api, "team/app", arm)),
        ],
    )
    v1_size = await manifest_size(api, "team/app", digests["v1"])
    subject = {"mediaType": OCI_MANIFEST, "digest": digests["v1"], "size": v1_size}
    for name, kind in (("signature", SIGNATURE_TYPE), ("sbom", SBOM_TYPE)):
        digests[name] = await push_referrer(api, "team/app", subject, kind, name.encode())
    return digests


@asynccontextmanager
async def seeded_registry(
    tmp_path: Path, auth_files: dict[str, Path], **settings: Any
) -> AsyncIterator[Seeded]:
    """The seeded app, with ``settings`` (e.g. ``quotas``) on top of the tests' own."""
    data_dir = tmp_path / "data"
    app = create_app(
        load_settings(
            storage={"data_dir": data_dir}, auth=auth_files, ui={"page_size": 3}, **settings
        )
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://registry",
            auth=("root", password("root")),
        ) as api:
            digests = await seed(api)
        yield Seeded(app, auth_files["htpasswd"], digests, data_dir)


@pytest.fixture
async def seeded(tmp_path: Path, auth_files: dict[str, Path]) -> AsyncIterator[Seeded]:
    async with seeded_registry(tmp_path, auth_files) as registry:
        yield registry
