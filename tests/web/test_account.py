"""Signing in and out of the UI, session cookies, throttling, and the user's API tokens."""

from __future__ import annotations

import asyncio
import base64
import json
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from moorage.app import create_app
from moorage.auth.htpasswd import set_password
from moorage.config import load_settings
from tests.web.conftest import Seeded
from tests.web.html import Element
from tests.web.support import browser, csrf_of, page, password, sign_in


def set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    found = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            found[name] = cookie
    return found


def signed_in_as(document: Element) -> str | None:
    for user in document.find_all("strong"):
        if user.attrs.get("data-testid") == "user":
            return str(user.clean_text)
    return None


@pytest.mark.parametrize(
    ("base_url", "secure"), [("http://registry", False), ("https://registry", True)]
)
async def test_session_cookie_flags(seeded: Seeded, base_url: str, secure: bool) -> None:
    async with browser(seeded.app, base_url=base_url) as client:
        first = await client.get("/ui/sign-in")
        csrf_cookie = set_cookies(first)["moorage_csrf"]["moorage_csrf"]
        assert csrf_cookie["httponly"] and csrf_cookie["samesite"] == "lax"
        assert csrf_cookie["path"] == "/ui"
        assert bool(csrf_cookie["secure"]) is secure
        response = await sign_in(client, "rita", password("rita"))
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/"
        session = set_cookies(response)["moorage_session"]["moorage_session"]
        assert session["httponly"] is True
        assert session["samesite"] == "lax"
        assert session["path"] == "/ui"
        assert bool(session["secure"]) is secure
        assert int(session["max-age"]) == 8 * 3600


async def test_secure_cookie_behind_a_trusted_tls_proxy(
    tmp_path: Path, auth_files: dict[str, Path]
) -> None:
    settings = load_settings(
        storage={"data_dir": tmp_path / "d"}, auth=auth_files, proxy={"trusted": ["127.0.0.1"]}
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://registry") as client,
    ):
        response = await client.get("/ui/sign-in", headers={"X-Forwarded-Proto": "https"})
        assert set_cookies(response)["moorage_csrf"]["moorage_csrf"]["secure"]
        response = await client.get("/ui/sign-in")
        assert not set_cookies(response)["moorage_csrf"]["moorage_csrf"]["secure"]


async def test_sign_in_shows_the_user_and_sign_out_ends_the_session(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as client:
        document = page(await client.get("/ui/"))
        assert signed_in_as(document) == "wendy"
        form = document.find("form", action="/ui/sign-out")
        response = await client.post("/ui/sign-out", data={"csrf": csrf_of(form)})
        assert response.status_code == 303
        cleared = set_cookies(response)["moorage_session"]["moorage_session"]
        assert cleared["max-age"] == "0" or cleared["expires"]
        assert signed_in_as(page(await client.get("/ui/"))) is None


async def test_sign_out_needs_the_csrf_token(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as client:
        response = await client.post("/ui/sign-out", data={"csrf": "nope"})
        assert response.status_code == 403
        assert signed_in_as(page(await client.get("/ui/"))) == "wendy"


async def test_sign_in_form_needs_the_csrf_token(seeded: Seeded) -> None:
    async with browser(seeded.app) as client:
        await client.get("/ui/sign-in")
        response = await client.post(
            "/ui/sign-in", data={"username": "rita", "password": password("rita")}
        )
        assert response.status_code == 403
        assert "moorage_session" not in set_cookies(response)


async def test_wrong_password_is_refused_and_repeated_failures_are_throttled(
    seeded: Seeded,
) -> None:
    async with browser(seeded.app) as client:
        for _ in range(5):
            response = await sign_in(client, "rita", "wrong")
            assert response.status_code == 401
            assert page(response).find("p", role="alert").clean_text == (
                "Wrong user name or password."
            )
        # Over the limit: even the right password is not checked.
        response = await sign_in(client, "rita", password("rita"))
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        assert "moorage_session" not in set_cookies(response)
        # Another user from the same address is still let in (the per-address limit is higher).
        response = await sign_in(client, "wendy", password("wendy"))
        assert response.status_code == 303


async def test_an_unknown_user_is_refused_like_a_wrong_password(seeded: Seeded) -> None:
    async with browser(seeded.app) as client:
        unknown = await sign_in(client, "mallory", "whatever")
        wrong = await sign_in(client, "rita", "whatever")
        assert unknown.status_code == wrong.status_code == 401
        assert (
            page(unknown).find("p", role="alert").text == page(wrong).find("p", role="alert").text
        )


async def test_next_page_never_leaves_the_ui(seeded: Seeded) -> None:
    async with browser(seeded.app) as client:
        form = page(await client.get("/ui/sign-in"))
        for target, expected in (
            ("/ui/r/team/app", "/ui/r/team/app"),
            ("//evil.example/", "/ui/"),
            ("https://evil.example/", "/ui/"),
            ("/ui/\\evil", "/ui/"),
            ("/ui//evil.example", "/ui/"),
        ):
            response = await client.post(
                "/ui/sign-in",
                data={
                    "csrf": csrf_of(form),
                    "username": "rita",
                    "password": password("rita"),
                    "next": target,
                },
            )
            assert response.headers["location"] == expected


async def test_a_tampered_session_cookie_is_anonymous(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        cookie = client.cookies["moorage_session"]
        payload, mac = cookie.split(".")
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        body["u"] = "root"
        forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
        client.cookies.set("moorage_session", f"{forged}.{mac}", path="/ui")
        document = page(await client.get("/ui/"))
        assert signed_in_as(document) is None
        assert (await client.get("/ui/r/secret/vault")).status_code == 404


async def test_a_password_change_ends_the_session(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        assert (await client.get("/ui/r/team/app")).status_code == 200
        set_password(seeded.htpasswd, "rita", "a-new-password-1")
        # The htpasswd file is re-read when it changes (checked at most once a second).
        for _ in range(30):
            if (await client.get("/ui/r/team/app")).status_code == 404:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/ui/r/team/app")).status_code == 404


async def test_tokens_create_shows_the_secret_once_and_revoke_works(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as client:
        document = page(await client.get("/ui/tokens"))
        assert not document.has_id("tokens")
        form = document.find("form", action="/ui/tokens")
        response = await client.post(
            "/ui/tokens",
            data={
                "csrf": csrf_of(form),
                "description": "ci <b>bot</b>",
                "scopes": "repository:team/*:pull",
                "expires": "30d",
            },
        )
        assert response.status_code == 201
        assert response.headers["cache-control"] == "no-store"
        created = page(response)
        secret = str(created.by_id("new-token").attrs["value"])
        assert secret.startswith("moor_")
        [row] = created.rows("tokens")
        assert row[1] == "ci <b>bot</b>"
        assert row[2] == "repository:team/*:pull"
        assert row[5] == "active"
        # The secret works as wendy's password, for the API and for the UI.
        api = await client.get("/v2/team/app/tags/list", auth=("wendy", secret))
        assert api.status_code == 200
        # Shown once: the list never holds it again.
        listed = await client.get("/ui/tokens")
        assert secret not in listed.text
        token_id = row[0]
        revoke = page(listed).find("form", action="/ui/tokens/revoke")
        response = await client.post(
            "/ui/tokens/revoke", data={"csrf": csrf_of(revoke), "id": token_id}
        )
        assert response.status_code == 303
        [row] = page(await client.get("/ui/tokens")).rows("tokens")
        assert row[5] == "revoked"
        api = await client.get("/v2/team/app/tags/list", auth=("wendy", secret))
        assert api.status_code == 401


async def test_bad_token_requests_are_explained(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as client:
        csrf = csrf_of(page(await client.get("/ui/tokens")))
        for scopes, expires in (
            ("nonsense", "30d"),
            ("repository:x:fly", "30d"),
            ("repository:*:pull", "5y"),
        ):
            response = await client.post(
                "/ui/tokens", data={"csrf": csrf, "scopes": scopes, "expires": expires}
            )
            assert response.status_code == 400
            assert page(response).find("p", role="alert").clean_text
            assert not page(response).has_id("new-token")


async def test_another_users_tokens_are_never_shown_or_revoked(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as wendy:
        csrf = csrf_of(page(await wendy.get("/ui/tokens")))
        created = page(
            await wendy.post(
                "/ui/tokens",
                data={"csrf": csrf, "scopes": "repository:team/*:pull", "expires": "7d"},
            )
        )
        [row] = created.rows("tokens")
    async with browser(seeded.app, "root") as root:
        document = page(await root.get("/ui/tokens"))
        assert not document.has_id("tokens")
        response = await root.post(
            "/ui/tokens/revoke", data={"csrf": csrf_of(document), "id": row[0]}
        )
        assert response.status_code == 404
    async with browser(seeded.app, "wendy") as wendy:
        [row] = page(await wendy.get("/ui/tokens")).rows("tokens")
        assert row[5] == "active"


async def test_an_api_token_signs_in_but_cannot_manage_tokens(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as client:
        csrf = csrf_of(page(await client.get("/ui/tokens")))
        created = page(
            await client.post(
                "/ui/tokens",
                data={"csrf": csrf, "scopes": "repository:public/*:pull", "expires": "7d"},
            )
        )
        secret = str(created.by_id("new-token").attrs["value"])
    async with browser(seeded.app) as client:
        response = await sign_in(client, "wendy", secret)
        assert response.status_code == 303
        document = page(await client.get("/ui/"))
        assert signed_in_as(document) == "wendy"
        assert "/ui/tokens" not in document.links()
        # Limited to the token's scopes: team/app is wendy's, but not this token's.
        names = [row[0] for row in document.rows("repositories")]
        assert names == ["public/hello"]
        assert (await client.get("/ui/r/team/app")).status_code == 404
        assert (await client.get("/ui/tokens")).status_code == 404
    async with browser(seeded.app) as client:
        # Another user's name with the token is refused.
        assert (await sign_in(client, "rita", secret)).status_code == 401


async def test_revoking_a_token_ends_the_sessions_opened_with_it(seeded: Seeded) -> None:
    async with browser(seeded.app, "wendy") as owner:
        csrf = csrf_of(page(await owner.get("/ui/tokens")))
        created = page(
            await owner.post(
                "/ui/tokens",
                data={"csrf": csrf, "scopes": "repository:team/*:pull", "expires": "7d"},
            )
        )
        secret = str(created.by_id("new-token").attrs["value"])
        [row] = created.rows("tokens")
        async with browser(seeded.app) as robot:
            assert (await sign_in(robot, "wendy", secret)).status_code == 303
            assert (await robot.get("/ui/r/team/app")).status_code == 200
            await owner.post("/ui/tokens/revoke", data={"csrf": csrf, "id": row[0]})
            assert (await robot.get("/ui/r/team/app")).status_code == 404
            assert signed_in_as(page(await robot.get("/ui/"))) is None


async def test_anonymous_visitors_have_no_token_page(seeded: Seeded) -> None:
    async with browser(seeded.app) as client:
        assert (await client.get("/ui/tokens")).status_code == 404
        document = page(await client.get("/ui/"))
        assert "/ui/tokens" not in document.links()
        assert any(link.startswith("/ui/sign-in") for link in document.links())
