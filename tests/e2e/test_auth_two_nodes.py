"""Two `moorage serve` nodes on one PostgreSQL, sharing the htpasswd file, the policy file and
the token signing key (docs/auth.md#several-nodes): a token issued by one is taken by the other,
and a policy edit, a removed user and a revoked API token are refused by both within the bound.
The bounds are shortened here (policy 0.5 s, API tokens 1 s) to keep the test quick."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.auth.htpasswd import add_user, remove_user
from moorage.auth.signing_key import load_or_create
from tests.e2e.support import RegistryServer, moorage_executable
from tests.support_pg import PostgresServer

pytestmark = pytest.mark.e2e

BOUND = 1.0 + 1.0 + 0.5  # API token cache (or the policy's 0.5 s), plus htpasswd's 1 s look
POLICY = (
    "rules:\n  - repositories: ['team/*']\n    users: [alice, bob]\n    actions: [pull, push]\n"
)
NO_PUSH_FOR_BOB = (
    "rules:\n  - repositories: ['team/*']\n    users: [alice]\n    actions: [pull, push]\n"
    "  - repositories: ['team/*']\n    users: [bob]\n    actions: [pull]\n"
)
BLOB = b"two nodes, one policy"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def shared(tmp_path: Path) -> dict[str, Path]:
    files = tmp_path / "shared"
    files.mkdir()
    for user in ("alice", "bob"):
        add_user(files / "htpasswd", user, f"{user}-pw")
    (files / "policy.yaml").write_text(POLICY)
    load_or_create(None, None, files)  # one signing key for both nodes
    return {
        "htpasswd": files / "htpasswd",
        "policy": files / "policy.yaml",
        "key": files / "auth" / "token-key.pem",
        "cert": files / "auth" / "token-cert.pem",
    }


@pytest.fixture
def nodes(
    postgres: PostgresServer, shared: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[list[RegistryServer], dict[str, str]]]:
    with contextlib.ExitStack() as stack:
        env = {
            "MOORAGE_DATABASE__URL": stack.enter_context(postgres.fresh_database()),
            "MOORAGE_AUTH__HTPASSWD": str(shared["htpasswd"]),
            "MOORAGE_AUTH__POLICY_FILE": str(shared["policy"]),
            "MOORAGE_AUTH__TOKEN__KEY_FILE": str(shared["key"]),
            "MOORAGE_AUTH__TOKEN__CERT_FILE": str(shared["cert"]),
            "MOORAGE_AUTH__POLICY_CHECK_SECONDS": "0.5",
            "MOORAGE_AUTH__API_TOKEN_CACHE_SECONDS": "1",
            "MOORAGE_GC__INTERVAL": "0",
        }
        servers = [
            stack.enter_context(RegistryServer("moorage", tmp_path / f"node{i}", env=env))
            for i in range(2)
        ]
        yield servers, env


def push(node: RegistryServer, auth: tuple[str, str] | dict[str, str]) -> int:
    """A monolithic blob upload with Basic credentials or a bearer header; its status."""
    url = f"/v2/team/app/blobs/uploads/?digest={DIGEST}"
    with node.client() as client:
        if isinstance(auth, dict):
            return client.post(url, content=BLOB, headers=auth).status_code
        return client.post(url, content=BLOB, auth=auth).status_code


def bearer(node: RegistryServer, user: str) -> dict[str, str]:
    with node.client() as client:
        response = client.get(
            "/token",
            params={"service": "moorage", "scope": "repository:team/app:pull,push"},
            auth=(user, f"{user}-pw"),
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_auth_changes_reach_both_nodes(
    nodes: tuple[list[RegistryServer], dict[str, str]], shared: dict[str, Path]
) -> None:
    servers, env = nodes
    token = bearer(servers[0], "bob")  # issued by one node, taken by both
    created = subprocess.run(
        [
            moorage_executable(),
            "token",
            "create",
            "--user",
            "alice",
            "--scope",
            "repository:team/*:pull,push",
            "--expires",
            "1d",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    for node in servers:
        assert push(node, ("bob", "bob-pw")) == 201
        assert push(node, token) == 201
        assert push(node, ("alice", secret)) == 201

    shared["policy"].write_text(NO_PUSH_FOR_BOB)
    time.sleep(BOUND)
    for node in servers:
        assert push(node, ("bob", "bob-pw")) == 403, node.log_tail()
        assert push(node, token) == 403

    remove_user(shared["htpasswd"], "bob")
    time.sleep(BOUND)
    for node in servers:
        assert push(node, ("bob", "bob-pw")) == 401
        assert push(node, token) == 401

    token_id = secret.split("_")[1]
    revoked = subprocess.run(
        [moorage_executable(), "token", "revoke", token_id],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(BOUND)
    for node in servers:
        assert push(node, ("alice", secret)) == 401
        assert push(node, ("alice", "alice-pw")) == 201
