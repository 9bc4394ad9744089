"""Who may do what changes on every node within a bound (docs/auth.md#several-nodes): a
policy edit, a user removed, a password changed, an API token revoked. Two apps on one data
directory and one database stand for two nodes sharing the files; the bounds are shortened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from moorage.auth.access import parse_scope
from moorage.auth.api_tokens import ApiTokenStore
from moorage.auth.htpasswd import add_user, remove_user, set_password
from moorage.metadata.sql import make_engine
from tests.api.support import ClientFactory, digest_of

CHECK_SECONDS = 0.2  # policy re-read and API token cache, instead of 2 s and 30 s
WAIT = 2 * CHECK_SECONDS + 1.1  # plus the htpasswd file's one-second look on cached paths

POLICY = """
rules:
  - repositories: ["team/*"]
    users: [alice, bob]
    actions: [pull, push]
"""
NO_PUSH_FOR_BOB = """
rules:
  - repositories: ["team/*"]
    users: [alice]
    actions: [pull, push]
  - repositories: ["team/*"]
    users: [bob]
    actions: [pull]
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    htpasswd = tmp_path / "htpasswd"
    for user in ("alice", "bob"):
        add_user(htpasswd, user, f"{user}-pw")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"htpasswd": htpasswd, "policy_file": policy}


@pytest.fixture
async def nodes(
    make_client: ClientFactory, files: dict[str, Path]
) -> AsyncIterator[list[httpx.AsyncClient]]:
    auth = {
        **files,
        "policy_check_seconds": CHECK_SECONDS,
        "api_token_cache_seconds": CHECK_SECONDS,
    }
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(make_client(auth=auth)) for _ in range(2)]


async def push_blob(node: httpx.AsyncClient, auth: tuple[str, str] | dict[str, str]) -> int:
    """A monolithic blob upload as Basic credentials or with a bearer header; its status."""
    data = b"blob for the auth change tests"
    url = f"/v2/team/app/blobs/uploads/?digest={digest_of(data)}"
    if isinstance(auth, dict):
        response = await node.post(url, content=data, headers=auth)
    else:
        response = await node.post(url, content=data, auth=auth)
    return response.status_code


async def bearer(node: httpx.AsyncClient, user: str, scope: str) -> dict[str, str]:
    response = await node.get(
        "/token", params={"service": "moorage", "scope": scope}, auth=(user, f"{user}-pw")
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_a_policy_change_reaches_every_node_and_the_tokens_they_issued(
    nodes: list[httpx.AsyncClient], files: dict[str, Path]
) -> None:
    token = await bearer(nodes[0], "bob", "repository:team/app:pull,push")
    for node in nodes:
        assert await push_blob(node, ("bob", "bob-pw")) == 201
        assert await push_blob(node, token) == 201
    files["policy_file"].write_text(NO_PUSH_FOR_BOB)
    await asyncio.sleep(WAIT)
    for node in nodes:
        assert await push_blob(node, ("bob", "bob-pw")) == 403
        assert await push_blob(node, token) == 403  # a token issued before the change
        assert await push_blob(node, ("alice", "alice-pw")) == 201
    # And a new token for bob carries pull only.
    fresh = await bearer(nodes[1], "bob", "repository:team/app:pull,push")
    claims = jwt.decode(fresh["Authorization"][7:], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]


async def test_an_invalid_policy_keeps_the_previous_one(
    nodes: list[httpx.AsyncClient], files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    files["policy_file"].write_text("rules:\n  - repositories: ['team/*']\n    actions: [fly]\n")
    await asyncio.sleep(WAIT)
    for node in nodes:
        assert await push_blob(node, ("bob", "bob-pw")) == 201
    assert "policy file invalid, keeping the previous policy" in caplog.text


async def test_a_removed_user_is_refused_on_every_node(
    nodes: list[httpx.AsyncClient], files: dict[str, Path]
) -> None:
    token = await bearer(nodes[0], "bob", "repository:team/app:pull,push")
    for node in nodes:  # remembered: the credential cache and the token verifier's
        assert await push_blob(node, ("bob", "bob-pw")) == 201
        assert await push_blob(node, token) == 201
    remove_user(files["htpasswd"], "bob")
    await asyncio.sleep(WAIT)
    for node in nodes:
        assert await push_blob(node, ("bob", "bob-pw")) == 401
        assert await push_blob(node, token) == 401
        assert await push_blob(node, ("alice", "alice-pw")) == 201


async def test_a_changed_password_is_refused_on_every_node(
    nodes: list[httpx.AsyncClient], files: dict[str, Path]
) -> None:
    for node in nodes:
        assert await push_blob(node, ("bob", "bob-pw")) == 201
    set_password(files["htpasswd"], "bob", "new-pw")
    await asyncio.sleep(WAIT)
    for node in nodes:
        assert await push_blob(node, ("bob", "bob-pw")) == 401
        assert await push_blob(node, ("bob", "new-pw")) == 201


async def test_a_revoked_api_token_is_refused_on_every_node(
    nodes: list[httpx.AsyncClient], tmp_path: Path
) -> None:
    # `moorage token create` / `revoke` on the shared database, as an operator would.
    store = ApiTokenStore(make_engine(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}"))
    info, secret = store.create("bob", [parse_scope("repository:team/*:pull,push")], None, "ci")
    for node in nodes:
        assert await push_blob(node, ("bob", secret)) == 201
    assert store.revoke(info.id)
    await asyncio.sleep(WAIT)
    for node in nodes:
        assert await push_blob(node, ("bob", secret)) == 401
