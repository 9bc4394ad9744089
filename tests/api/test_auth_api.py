"""Authentication and authorization over HTTP: every route x method for every kind of caller,
Basic and Bearer, the token endpoint, and refused writes that change nothing."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from moorage.auth.access import parse_scope
from moorage.auth.api_tokens import ApiTokenStore
from moorage.auth.htpasswd import add_user, set_password
from moorage.auth.jwt_tokens import TokenIssuer
from moorage.auth.policy import load_policy
from moorage.auth.signing_key import load_or_create
from moorage.metadata.sql import make_engine
from tests.api.support import (
    OCI_MANIFEST,
    ClientFactory,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)

POLICY = """
admins: [root]
groups:
  readers: [reader]
rules:
  - repositories: ["team-a/*"]
    groups: [readers]
    actions: [pull]
  - repositories: ["team-a/*"]
    users: [writer]
    actions: [pull, push]
  - repositories: ["team-a/*"]
    users: [deleter]
    actions: [pull, delete]
  - repositories: ["team-b/*"]
    users: [other]
    actions: [pull, push, delete]
  - repositories: ["public/*"]
    anonymous: true
    actions: [pull]
  - repositories: ["releases/*"]
    users: [writer]
    actions: [pull, push]
    immutable_tags: true
"""
USERS = ["root", "reader", "writer", "deleter", "other"]
REPO = "team-a/app"


def password(user: str) -> str:
    return f"{user}-secret-pw"


def creds(user: str | None) -> httpx.Auth:
    """Basic credentials of ``user``; None: none at all (httpx.Auth sends the request as is)."""
    return httpx.Auth() if user is None else httpx.BasicAuth(user, password(user))


@pytest.fixture
def auth_files(tmp_path: Path) -> dict[str, Path]:
    htpasswd = tmp_path / "htpasswd"
    for user in USERS:
        add_user(htpasswd, user, password(user))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    load_policy(policy)  # the test's own policy must be valid
    return {"htpasswd": htpasswd, "policy_file": policy}


@pytest.fixture
async def authed(
    make_client: ClientFactory, auth_files: dict[str, Path]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(auth=auth_files) as client:
        yield client


class As:
    """A client that sends one user's Basic credentials on every request."""

    def __init__(self, client: httpx.AsyncClient, user: str | None) -> None:
        self.client = client
        self.auth = creds(user)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.auth is not None:
            kwargs["auth"] = self.auth
        return await self.client.request(method, url, **kwargs)


async def seed(client: httpx.AsyncClient) -> dict[str, str]:
    """An image tagged v1 in team-a/app, pushed by the admin; returns its digests."""
    root = As(client, "root")
    config, layer = b'{"seed":"cfg"}', b"layer-bytes"
    digests = {}
    for name, data in (("config", config), ("layer", layer)):
        digest = digest_of(data)
        response = await root.request(
            "POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", content=data
        )
        assert response.status_code == 201, response.text
        digests[name] = digest
    manifest = image_manifest(digests["config"], len(config), [(digests["layer"], len(layer))])
    response = await root.request(
        "PUT", f"/v2/{REPO}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201
    digests["manifest"] = digest_of(manifest)
    digests["manifest_bytes"] = manifest.decode()
    return digests


def route_requests(
    digests: dict[str, str], upload: str
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(action, method, url, kwargs) for every /v2 route and method."""
    manifest = digests["manifest_bytes"].replace(
        '"schemaVersion"', '"annotations":{"x":"y"},"schemaVersion"'
    )
    new_blob = b"never-stored"
    return [
        ("pull", "GET", f"/v2/{REPO}/manifests/v1", {}),
        ("pull", "HEAD", f"/v2/{REPO}/manifests/{digests['manifest']}", {}),
        ("pull", "GET", f"/v2/{REPO}/blobs/{digests['layer']}", {}),
        ("pull", "HEAD", f"/v2/{REPO}/blobs/{digests['layer']}", {}),
        ("pull", "GET", f"/v2/{REPO}/tags/list", {}),
        ("pull", "GET", f"/v2/{REPO}/referrers/{digests['manifest']}", {}),
        ("push", "POST", f"/v2/{REPO}/blobs/uploads/", {}),
        (
            "push",
            "POST",
            f"/v2/{REPO}/blobs/uploads/?digest={digest_of(new_blob)}",
            {"content": new_blob},
        ),
        ("push", "GET", f"/v2/{REPO}/blobs/uploads/{upload}", {}),
        (
            "push",
            "PATCH",
            f"/v2/{REPO}/blobs/uploads/{upload}",
            {"content": b"abc", "headers": {"Content-Range": "0-2"}},
        ),
        (
            "push",
            "PUT",
            f"/v2/{REPO}/blobs/uploads/{upload}?digest={digest_of(b'abc')}",
            {},
        ),
        (
            "push",
            "PUT",
            f"/v2/{REPO}/manifests/v1",
            {"content": manifest.encode(), "headers": {"Content-Type": OCI_MANIFEST}},
        ),
        ("delete", "DELETE", f"/v2/{REPO}/manifests/v1", {}),
        ("delete", "DELETE", f"/v2/{REPO}/manifests/{digests['manifest']}", {}),
        ("delete", "DELETE", f"/v2/{REPO}/blobs/{digests['layer']}", {}),
        ("push", "DELETE", f"/v2/{REPO}/blobs/uploads/{upload}", {}),
    ]


ALLOWED = {
    "pull": {"root", "reader", "writer", "deleter"},
    "push": {"root", "writer"},
    "delete": {"root", "deleter"},
}


async def state(client: httpx.AsyncClient, digests: dict[str, str], upload: str) -> Any:
    root = As(client, "root")
    tags = (await root.request("GET", f"/v2/{REPO}/tags/list")).json()
    manifest = await root.request("GET", f"/v2/{REPO}/manifests/v1")
    blob = await root.request("HEAD", f"/v2/{REPO}/blobs/{digests['layer']}")
    session = await root.request("GET", f"/v2/{REPO}/blobs/uploads/{upload}")
    absent = await root.request("HEAD", f"/v2/{REPO}/blobs/{digest_of(b'never-stored')}")
    return (
        tags,
        manifest.status_code,
        manifest.headers.get("docker-content-digest"),
        blob.status_code,
        session.status_code,
        session.headers.get("range"),
        absent.status_code,
    )


async def test_every_route_refuses_callers_without_the_action_and_changes_nothing(
    authed: httpx.AsyncClient,
) -> None:
    digests = await seed(authed)
    start = await As(authed, "root").request("POST", f"/v2/{REPO}/blobs/uploads/")
    upload = start.headers["location"].rsplit("/", 1)[-1]
    before = await state(authed, digests, upload)
    refused = 0
    for user in [None, *USERS]:
        for action, method, url, kwargs in route_requests(digests, upload):
            if user in ALLOWED[action]:
                continue
            response = await As(authed, user).request(method, url, **kwargs)
            expected = 401 if user is None else 403
            assert response.status_code == expected, (user, method, url, response.text)
            if method != "HEAD":
                assert error_code(response) == ("UNAUTHORIZED" if user is None else "DENIED")
            if user is None:
                assert response.headers["www-authenticate"].startswith("Bearer realm=")
                assert f'scope="repository:{REPO}:{action}"' in response.headers["www-authenticate"]
            refused += 1
    assert refused > 50  # every kind of caller was refused something
    assert await state(authed, digests, upload) == before


@pytest.mark.parametrize("user", ["root", "reader", "writer", "deleter"])
async def test_allowed_callers_get_their_routes(authed: httpx.AsyncClient, user: str) -> None:
    digests = await seed(authed)
    start = await As(authed, "root").request("POST", f"/v2/{REPO}/blobs/uploads/")
    upload = start.headers["location"].rsplit("/", 1)[-1]
    for action, method, url, kwargs in route_requests(digests, upload):
        if user not in ALLOWED[action] or action == "delete":
            continue
        response = await As(authed, user).request(method, url, **kwargs)
        assert response.status_code < 400 or response.status_code == 404, (
            method,
            url,
            response.text,
        )
    if user in ALLOWED["delete"]:
        response = await As(authed, user).request("DELETE", f"/v2/{REPO}/manifests/v1")
        assert response.status_code == 202


async def test_v2_root_challenges_anonymous_even_with_public_pull(
    authed: httpx.AsyncClient,
) -> None:
    response = await authed.get("/v2/")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="http://registry/token",service="moorage"')
    assert (await authed.get("/v2/", auth=creds("reader"))).status_code == 200
    assert (await authed.get("/v2/", auth=("reader", "wrong"))).status_code == 401
    assert (await authed.get("/v2/", auth=("nobody", "x"))).status_code == 401
    for open_path in ("/_ping", "/v1/_ping", "/healthz", "/readyz"):
        assert (await authed.get(open_path)).status_code == 200


async def test_anonymous_pulls_public_repositories(authed: httpx.AsyncClient) -> None:
    authed.auth = creds("root")
    digest, _ = await push_image(authed, "public/tool", "v1")
    authed.auth = creds(None)
    response = await authed.get("/v2/public/tool/manifests/v1", auth=None)
    assert response.status_code == 200
    assert response.headers["docker-content-digest"] == digest
    refused = await authed.put(
        "/v2/public/tool/manifests/v2", content=b"{}", headers={"Content-Type": OCI_MANIFEST}
    )
    assert refused.status_code == 401


async def test_bad_credentials_are_401_not_anonymous(authed: httpx.AsyncClient) -> None:
    authed.auth = creds("root")
    await push_image(authed, "public/tool", "v1")
    authed.auth = creds(None)
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Digest x"):
        response = await authed.get(
            "/v2/public/tool/manifests/v1", headers={"Authorization": header}
        )
        assert response.status_code == 401, header
    response = await authed.get("/v2/public/tool/manifests/v1", auth=("reader", "wrong"))
    assert response.status_code == 401
    assert "wrong" not in response.text


PUBLIC = "public/tool"


def signed_token(data_dir: Path, *, audience: str = "moorage", age: float = 0) -> str:
    """A token for reader's pull on PUBLIC, signed with the registry's own key and issued
    ``age`` seconds ago for ``audience``: valid unless one of those two makes it not."""
    key = load_or_create(None, None, data_dir)
    issuer = TokenIssuer(key, "moorage", 300, 600, clock=lambda: time.time() - age)
    return issuer.issue("reader", audience, [parse_scope(f"repository:{PUBLIC}:pull")]).token


def tampered(token: str) -> str:
    """``token`` with another valid-looking signature: the same claims, not signed by us."""
    header, payload, signature = token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{header}.{payload}.{flipped}{signature[1:]}"


def refused_credentials(data_dir: Path) -> dict[str, dict[str, str]]:
    """Authorization headers that are presented and wrong, by what is wrong with them."""

    def basic(user: str, secret: str) -> dict[str, str]:
        encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {encoded}"}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "wrong-password": basic("reader", "wrong-pw-3f9a"),
        "unknown-user": basic("nobody-7c1e", password("reader")),
        "bad-signature": bearer(tampered(signed_token(data_dir))),
        "expired": bearer(signed_token(data_dir, age=1000)),
        "wrong-audience": bearer(signed_token(data_dir, audience="another-registry")),
    }


def secret_of(headers: dict[str, str]) -> str:
    """The part of an Authorization header that must never be echoed or logged."""
    scheme, _, value = headers["Authorization"].partition(" ")
    if scheme == "Basic":
        return base64.b64decode(value).decode().partition(":")[2]
    return value.split(".")[2]  # the signature; the rest is the client's own claims


async def public_requests(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every read of a repository anonymous callers may pull, and the catalog."""
    client.auth = creds("root")
    digest, _ = await push_image(client, PUBLIC, "v1", seed=b"pub")
    client.auth = creds(None)
    layer = digest_of(b"layer-pub")
    return [
        ("GET", f"/v2/{PUBLIC}/manifests/v1"),
        ("HEAD", f"/v2/{PUBLIC}/manifests/{digest}"),
        ("GET", f"/v2/{PUBLIC}/blobs/{layer}"),
        ("HEAD", f"/v2/{PUBLIC}/blobs/{layer}"),
        ("GET", f"/v2/{PUBLIC}/tags/list"),
        ("GET", f"/v2/{PUBLIC}/referrers/{digest}"),
        ("GET", "/v2/_catalog"),
    ]


@pytest.mark.parametrize(
    "kind", ["wrong-password", "unknown-user", "bad-signature", "expired", "wrong-audience"]
)
async def test_wrong_credentials_are_401_on_public_reads_never_anonymous(
    authed: httpx.AsyncClient, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    reads = await public_requests(authed)
    headers = refused_credentials(tmp_path / "data")[kind]
    secret = secret_of(headers)
    for method, url in [*reads, ("GET", "/v2/")]:
        anonymous = await authed.request(method, url)
        if url != "/v2/":  # /v2/ challenges anonymous callers by design
            assert anonymous.status_code == 200, (method, url, anonymous.text)
        response = await authed.request(method, url, headers=headers)
        assert response.status_code == 401, (kind, method, url, response.text)
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="http://registry/token",service="moorage"')
        if kind in ("bad-signature", "expired", "wrong-audience"):
            assert 'error="invalid_token"' in challenge
        if method != "HEAD":
            assert error_code(response) == "UNAUTHORIZED"
        assert secret not in response.text
    assert secret not in caplog.text


async def test_the_tokens_refused_above_are_refused_only_for_what_is_wrong_with_them(
    authed: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The same construction, with nothing wrong, is accepted: the refusals above are the
    signature's, the expiry's and the audience's, not an accident of how the tokens were made."""
    await public_requests(authed)
    valid = {"Authorization": f"Bearer {signed_token(tmp_path / 'data')}"}
    response = await authed.get(f"/v2/{PUBLIC}/manifests/v1", headers=valid)
    assert response.status_code == 200, response.text
    assert (await authed.get("/v2/", headers=valid)).status_code == 200


async def test_anonymous_catalog_lists_public_repositories_and_wrong_credentials_do_not(
    authed: httpx.AsyncClient,
) -> None:
    await public_requests(authed)
    anonymous = await authed.get("/v2/_catalog")
    assert anonymous.json()["repositories"] == [PUBLIC]
    wrong = await authed.get("/v2/_catalog", auth=("reader", "wrong-pw-3f9a"))
    assert wrong.status_code == 401
    assert "repositories" not in wrong.json()
    assert 'scope="registry:catalog:*"' in wrong.headers["www-authenticate"]


BASIC_CHALLENGE = 'Basic realm="moorage", charset="UTF-8"'


@pytest.mark.parametrize("kind", ["wrong-password", "unknown-user"])
async def test_wrong_credentials_are_401_on_public_reads_with_the_token_service_off(
    make_client: ClientFactory, auth_files: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    headers = refused_credentials(tmp_path / "data")[kind]
    async with make_client(auth={**auth_files, "token": {"enabled": False}}) as client:
        for method, url in await public_requests(client):
            assert (await client.request(method, url)).status_code == 200, (method, url)
            response = await client.request(method, url, headers=headers)
            assert response.status_code == 401, (kind, method, url, response.text)
            assert response.headers["www-authenticate"] == BASIC_CHALLENGE


@pytest.mark.parametrize(
    "kind", ["wrong-password", "unknown-user", "bad-signature", "expired", "wrong-audience"]
)
async def test_the_token_endpoint_answers_wrong_credentials_with_a_basic_challenge(
    authed: httpx.AsyncClient, tmp_path: Path, kind: str
) -> None:
    """The token endpoint takes Basic credentials, so its 401 asks for them (RFC 9110: a 401
    carries a challenge), as distribution's token server does; a Bearer challenge would send
    the client back to the endpoint that just refused it."""
    headers = refused_credentials(tmp_path / "data")[kind]
    query = {"service": "moorage", "scope": f"repository:{PUBLIC}:pull"}
    anonymous = await authed.get("/token", params=query)
    assert anonymous.status_code == 200
    response = await authed.get("/token", params=query, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE
    assert error_code(response) == "UNAUTHORIZED"
    assert "token" not in response.json()
    assert secret_of(headers) not in response.text


async def test_the_token_endpoint_post_answers_refused_grants_with_a_basic_challenge(
    authed: httpx.AsyncClient,
) -> None:
    for form in (
        {"grant_type": "password", "username": "reader", "password": "wrong-pw-3f9a"},
        {"grant_type": "password", "username": "nobody-7c1e", "password": password("reader")},
        {"grant_type": "refresh_token", "refresh_token": "not-a-refresh-token"},
    ):
        response = await authed.post("/token", data={**form, "service": "moorage"})
        assert response.status_code == 401, (form, response.text)
        assert response.headers["www-authenticate"] == BASIC_CHALLENGE
        assert error_code(response) == "UNAUTHORIZED"
        assert "wrong-pw-3f9a" not in response.text


async def test_a_valid_bearer_token_at_the_token_endpoint_is_refused_with_a_basic_challenge(
    authed: httpx.AsyncClient, tmp_path: Path
) -> None:
    valid = {"Authorization": f"Bearer {signed_token(tmp_path / 'data')}"}
    response = await authed.get("/token", params={"service": "moorage"}, headers=valid)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE


async def token_for(
    client: httpx.AsyncClient, user: str | None, *scopes: str, **params: str
) -> dict[str, Any]:
    query: list[tuple[str, str | int | float | bool | None]] = [
        ("service", "moorage"),
        *(("scope", s) for s in scopes),
        *params.items(),
    ]
    response = await client.get(
        "/token",
        params=httpx.QueryParams(query),
        auth=httpx.USE_CLIENT_DEFAULT if user is None else creds(user),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_token_grants_the_intersection_of_request_and_policy(
    authed: httpx.AsyncClient,
) -> None:
    body = await token_for(
        authed, "reader", f"repository:{REPO}:pull,push,delete", "repository:team-b/x:pull"
    )
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert claims(body["token"])["access"] == [
        {"type": "repository", "name": REPO, "actions": ["pull"]}
    ]
    assert claims(body["token"])["sub"] == "reader"
    anonymous = await token_for(authed, None, f"repository:{REPO}:pull")
    assert claims(anonymous["token"])["access"] == []
    escalation = await token_for(
        authed, "writer", "repository:team-a/*:push", "repository:team-a:app:push"
    )
    assert claims(escalation["token"])["access"] == []


async def test_bearer_flow_pushes_and_pulls(authed: httpx.AsyncClient) -> None:
    body = await token_for(authed, "writer", f"repository:{REPO}:pull,push")
    bearer = {"Authorization": f"Bearer {body['token']}"}
    data = b"through-a-token"
    digest = digest_of(data)
    response = await authed.post(
        f"/v2/{REPO}/blobs/uploads/?digest={digest}", content=data, headers=bearer
    )
    assert response.status_code == 201
    assert (await authed.get(f"/v2/{REPO}/blobs/{digest}", headers=bearer)).content == data
    assert (await authed.get("/v2/", headers=bearer)).status_code == 200
    # The token holds team-a/app only: another repository needs another token.
    other = await authed.get("/v2/team-a/other/tags/list", headers=bearer)
    assert other.status_code == 401
    assert 'error="insufficient_scope"' in other.headers["www-authenticate"]
    # What the writer may never do is a 403, whatever the token.
    assert (await authed.delete(f"/v2/{REPO}/blobs/{digest}", headers=bearer)).status_code == 403
    assert (await authed.get("/v2/team-b/x/tags/list", headers=bearer)).status_code == 403


async def test_forged_tokens_are_refused(authed: httpx.AsyncClient) -> None:
    body = await token_for(authed, "reader", f"repository:{REPO}:pull")
    header, payload, signature = body["token"].split(".")
    raised = json.loads(base64.urlsafe_b64decode(payload + "=="))
    raised["access"][0]["actions"] = ["pull", "push", "delete"]
    tampered_payload = base64.urlsafe_b64encode(json.dumps(raised).encode()).rstrip(b"=").decode()
    unsigned = jwt.encode(raised, key="", algorithm="none")
    for token in (
        f"{header}.{tampered_payload}.{signature}",
        unsigned,
        "garbage",
        body["token"] + "x",
    ):
        response = await authed.delete(
            f"/v2/{REPO}/manifests/v1", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # A token cannot mint a fresh one (a stolen token would never expire).
    renewed = await authed.get(
        "/token",
        params={"service": "moorage", "scope": f"repository:{REPO}:pull"},
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert renewed.status_code == 401
    # An issued token is not a password.
    response = await authed.get("/v2/", auth=("reader", body["token"]))
    assert response.status_code == 401


async def test_oauth2_password_and_refresh_grants(
    authed: httpx.AsyncClient, auth_files: dict[str, Path]
) -> None:
    form = {
        "grant_type": "password",
        "username": "writer",
        "password": password("writer"),
        "service": "moorage",
        "scope": f"repository:{REPO}:pull,push",
        "client_id": "tests",
        "access_type": "offline",
    }
    response = await authed.post("/token", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == f"repository:{REPO}:pull,push"
    refresh = body["refresh_token"]
    assert (await authed.get("/v2/", auth=("writer", refresh))).status_code == 401
    assert (
        await authed.get("/v2/", headers={"Authorization": f"Bearer {refresh}"})
    ).status_code == 401
    refreshed = await authed.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": "moorage",
            "scope": f"repository:{REPO}:pull",
            "client_id": "tests",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert claims(refreshed.json()["access_token"])["sub"] == "writer"
    wrong = await authed.post("/token", data={**form, "password": "nope"})
    assert wrong.status_code == 401
    bad_refresh = await authed.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert bad_refresh.status_code == 401
    unknown = await authed.post("/token", data={"grant_type": "client_credentials"})
    assert unknown.status_code == 400
    wrong_service = await authed.get("/token", params={"service": "elsewhere"})
    assert wrong_service.status_code == 400


async def test_a_refresh_token_ends_with_a_password_change_and_binds_its_client(
    authed: httpx.AsyncClient, auth_files: dict[str, Path]
) -> None:
    login = {
        "grant_type": "password",
        "username": "writer",
        "password": password("writer"),
        "service": "moorage",
        "client_id": "ci-robot",
        "access_type": "offline",
    }
    refresh = (await authed.post("/token", data=login)).json()["refresh_token"]
    grant = {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "service": "moorage",
        "client_id": "ci-robot",
    }
    assert (await authed.post("/token", data=grant)).status_code == 200
    other_client = await authed.post("/token", data={**grant, "client_id": "someone-else"})
    assert other_client.status_code == 401
    set_password(auth_files["htpasswd"], "writer", "a new password")
    after_change = await authed.post("/token", data=grant)
    assert after_change.status_code == 401
    assert after_change.json()["errors"][0]["code"] == "UNAUTHORIZED"


async def test_catalog_lists_only_pullable_repositories(authed: httpx.AsyncClient) -> None:
    authed.auth = creds("root")
    for repo in ("team-a/app", "team-a/db", "team-b/x", "public/tool", "secret/thing"):
        await push_image(authed, repo, "v1")
    authed.auth = creds(None)

    async def catalog(user: str | None, n: str = "") -> list[str]:
        response = await authed.get(
            f"/v2/_catalog{n}", auth=httpx.USE_CLIENT_DEFAULT if user is None else creds(user)
        )
        assert response.status_code == 200, response.text
        return list(response.json()["repositories"])

    assert await catalog("reader") == ["public/tool", "team-a/app", "team-a/db"]
    assert await catalog("other") == ["public/tool", "team-b/x"]
    assert len(await catalog("root")) == 5
    assert await catalog(None) == ["public/tool"]
    first = await authed.get("/v2/_catalog?n=1", auth=creds("reader"))
    assert first.json()["repositories"] == ["public/tool"]
    assert "last=public%2Ftool" in first.headers["link"]


async def test_mount_needs_pull_on_the_source_and_reveals_nothing(
    authed: httpx.AsyncClient,
) -> None:
    authed.auth = creds("root")
    await push_image(authed, "team-b/x", "v1", seed=b"b-secret")
    authed.auth = creds(None)
    layer = digest_of(b"layer-" + b"b-secret")
    absent = digest_of(b"no-such-layer")
    answers = []
    for digest in (layer, absent):
        response = await authed.post(
            f"/v2/{REPO}/blobs/uploads/?mount={digest}&from=team-b/x", auth=creds("writer")
        )
        answers.append(response.status_code)
        assert response.headers["location"].startswith(f"/v2/{REPO}/blobs/uploads/")
    assert answers == [202, 202]
    assert (await authed.head(f"/v2/{REPO}/blobs/{layer}", auth=creds("writer"))).status_code == 404
    # With pull on the source the mount works.
    authed.auth = creds("root")
    await push_image(authed, "team-a/base", "v1", seed=b"a-shared")
    authed.auth = creds(None)
    shared = digest_of(b"layer-a-shared")
    mounted = await authed.post(
        f"/v2/{REPO}/blobs/uploads/?mount={shared}&from=team-a/base", auth=creds("writer")
    )
    assert mounted.status_code == 201


async def other_manifest(client: httpx.AsyncClient, repo: str, seed: bytes) -> bytes:
    """A manifest whose blobs ``repo`` has, different from any ``push_image`` made."""
    config = b'{"architecture":"amd64","os":"linux","seed":"' + seed.hex().encode() + b'"}'
    await push_blob(client, repo, config)
    return image_manifest(digest_of(config), len(config), [])


async def test_immutable_tags_can_be_created_not_moved(authed: httpx.AsyncClient) -> None:
    authed.auth = creds("writer")
    await push_image(authed, "releases/app", "1.0", seed=b"one")
    manifest = await other_manifest(authed, "releases/app", b"two")
    response = await authed.put(
        "/v2/releases/app/manifests/1.0", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 403
    assert error_code(response) == "DENIED"
    tags = await authed.get("/v2/releases/app/tags/list")
    assert tags.json()["tags"] == ["1.0"]
    # Refused whole: the manifest it carried was not stored either.
    refused = digest_of(manifest)
    assert (await authed.head(f"/v2/releases/app/manifests/{refused}")).status_code == 404
    # The same push again (a retrying CI job) is no move: it succeeds.
    again, _ = await push_image(authed, "releases/app", "1.0", seed=b"one")
    current = await authed.get("/v2/releases/app/manifests/1.0")
    assert current.headers["docker-content-digest"] == again
    authed.auth = creds("root")
    await push_image(authed, "releases/app", "1.0", seed=b"admin-moves-it")


async def test_an_immutable_tag_cannot_be_moved_by_a_tag_query(authed: httpx.AsyncClient) -> None:
    """``PUT /manifests/<digest>?tag=1.0`` names the tag in the query, not in the path."""
    authed.auth = creds("writer")
    await push_image(authed, "releases/app", "2.0", seed=b"first")
    manifest = await other_manifest(authed, "releases/app", b"sq")
    response = await authed.put(
        f"/v2/releases/app/manifests/{digest_of(manifest)}?tag=2.0&tag=2.1",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 403
    assert error_code(response) == "DENIED"
    assert (await authed.get("/v2/releases/app/tags/list")).json()["tags"] == ["2.0"]


async def test_api_tokens_work_as_passwords_within_their_scope(
    authed: httpx.AsyncClient, tmp_path: Path
) -> None:
    store = ApiTokenStore(make_engine(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}"))
    _, secret = store.create("writer", [parse_scope("repository:team-a/*:pull")], None, "ci")
    assert (await authed.get("/v2/", auth=("writer", secret))).status_code == 200
    authed.auth = creds("root")
    await push_image(authed, REPO, "v1")
    authed.auth = creds(None)
    assert (await authed.get(f"/v2/{REPO}/tags/list", auth=("writer", secret))).status_code == 200
    # The writer could push with a password, but this token only pulls.
    refused = await authed.post(f"/v2/{REPO}/blobs/uploads/", auth=("writer", secret))
    assert refused.status_code == 403
    # Someone else's name with the token is no login.
    assert (await authed.get("/v2/", auth=("reader", secret))).status_code == 401


async def test_basic_challenge_when_the_token_service_is_off(
    make_client: ClientFactory, auth_files: dict[str, Path]
) -> None:
    async with make_client(auth={**auth_files, "token": {"enabled": False}}) as client:
        response = await client.get("/v2/")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="moorage", charset="UTF-8"'
        assert (await client.get("/v2/", auth=creds("reader"))).status_code == 200
        assert (await client.get("/token")).status_code == 404


async def test_a_bearer_token_mounts_only_from_repositories_its_claim_can_pull(
    authed: httpx.AsyncClient,
) -> None:
    # root may pull team-b/x, but this token holds only team-a/app.
    authed.auth = creds("root")
    await push_image(authed, "team-b/x", "v1", seed=b"b-secret")
    authed.auth = creds(None)
    body = await token_for(authed, "root", f"repository:{REPO}:pull,push")
    bearer = {"Authorization": f"Bearer {body['token']}"}
    layer = digest_of(b"layer-b-secret")
    mounted = await authed.post(
        f"/v2/{REPO}/blobs/uploads/?mount={layer}&from=team-b/x", headers=bearer
    )
    assert mounted.status_code == 202  # a plain upload: the token holds no pull on team-b/x
    assert (await authed.head(f"/v2/{REPO}/blobs/{layer}", headers=bearer)).status_code == 404


async def test_api_tokens_die_with_their_user(
    authed: httpx.AsyncClient, auth_files: dict[str, Path], tmp_path: Path
) -> None:
    from moorage.auth.htpasswd import remove_user

    store = ApiTokenStore(make_engine(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}"))
    _, secret = store.create("writer", [parse_scope("repository:team-a/*:pull")], None, "ci")
    assert (await authed.get("/v2/", auth=("writer", secret))).status_code == 200
    remove_user(auth_files["htpasswd"], "writer")
    assert (await authed.get("/v2/", auth=("writer", secret))).status_code == 401


async def test_basic_challenge_names_the_configured_realm(
    make_client: ClientFactory, auth_files: dict[str, Path]
) -> None:
    async with make_client(
        auth={**auth_files, "realm": "corp-registry", "token": {"enabled": False}}
    ) as client:
        response = await client.get("/v2/")
        assert (
            response.headers["www-authenticate"] == 'Basic realm="corp-registry", charset="UTF-8"'
        )
