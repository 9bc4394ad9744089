"""A repository's usage and quota, and deleting a whole repository, in the UI: who sees what
and who may do what, for anonymous visitors, a reader, a writer and an admin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from moorage.app import create_app
from moorage.cli.main import main
from moorage.config import load_settings
from moorage.web import pages
from tests.api.support import push_blob, push_image
from tests.web.conftest import Seeded, seeded_registry
from tests.web.html import Element
from tests.web.support import browser, csrf_of, page, password, sign_in

QUOTA = {"repositories": ["team/*"], "max_bytes": 1_000_000, "max_tags": 10}
# Bytes uploaded into team/app that no manifest references (a push that never finished).
STRAY = b"a layer whose manifest never came" * 10


@pytest.fixture
async def registry(tmp_path: Path, auth_files: dict[str, Path]) -> AsyncIterator[Seeded]:
    async with seeded_registry(tmp_path, auth_files, quotas=[QUOTA]) as seeded:
        async with api_client(seeded.app) as api:
            await push_blob(api, "team/app", STRAY)
        yield seeded


def api_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://registry",
        auth=("root", password("root")),
    )


async def tags_list(app: Starlette, name: str) -> httpx.Response:
    async with api_client(app) as api:
        return await api.get(f"/v2/{name}/tags/list")


def data_value(document: Element, element_id: str) -> int:
    element = document.by_id(element_id)
    assert element.tag == "data"
    return int(str(element.attrs["value"]))


def may_delete_repository(document: Element) -> bool:
    """Whether the page offers the repository delete, by its link or by any form posting it."""
    targets = document.links() + [str(f.attrs.get("action")) for f in document.find_all("form")]
    return any(target.endswith("/-/delete-repository") for target in targets)


def cli_report(data_dir: Path, *pattern: str) -> dict[str, Any]:
    """What ``moorage usage --json`` prints for this data directory."""
    result = CliRunner().invoke(main, ["usage", "--json", "--data-dir", str(data_dir), *pattern])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert isinstance(report, dict)
    return report


def cli_usage(data_dir: Path, name: str) -> dict[str, Any]:
    (entry,) = cli_report(data_dir, name)["repositories"]
    assert isinstance(entry, dict)
    return entry


@pytest.mark.parametrize(
    ("user", "pulls_team_app", "deletes"),
    [(None, False, False), ("rita", True, False), ("wendy", True, False), ("root", True, True)],
)
async def test_who_sees_usage_and_the_delete_button(
    registry: Seeded, user: str | None, pulls_team_app: bool, deletes: bool
) -> None:
    async with browser(registry.app, user) as client:
        for name, pulls in (("public/hello", True), ("team/app", pulls_team_app)):
            response = await client.get(f"/ui/r/{name}")
            if not pulls:
                assert response.status_code == 404
                continue
            document = page(response)
            assert document.by_id("usage-heading").clean_text == "Usage"
            assert data_value(document, "usage-bytes") > 0
            assert may_delete_repository(document) is deletes


async def test_usage_and_quota_are_what_moorage_usage_and_the_quota_count(
    registry: Seeded,
) -> None:
    expected = cli_usage(registry.data_dir, "team/app")
    assert expected["unreferenced_bytes"] >= len(STRAY)
    async with browser(registry.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app"))
        assert data_value(document, "usage-bytes") == expected["bytes"]
        assert data_value(document, "usage-unreferenced") == expected["unreferenced_bytes"]
        assert data_value(document, "usage-tags") == expected["tags"] == 4
        size_quota = document.by_id("quota-bytes")
        meter = size_quota.find("meter")
        assert meter.attrs["max"] == "1000000"
        assert meter.attrs["value"] == str(expected["bytes"])
        percent = expected["bytes"] * 100 // 1_000_000
        assert size_quota.clean_text == f"{percent}% of 1.0 MB"
        tag_quota = document.by_id("quota-tags")
        assert (tag_quota.find("meter").attrs["max"], tag_quota.find("meter").attrs["value"]) == (
            "10",
            "4",
        )
        assert tag_quota.clean_text == "40% of 10 tags"
        # No quota matches public/*: usage without limits.
        public = page(await client.get("/ui/r/public/hello"))
        assert data_value(public, "usage-tags") == 1
        assert not public.has_id("quota-bytes")
        assert not public.has_id("quota-tags")


async def test_readers_writers_and_anonymous_cannot_delete_a_repository(registry: Seeded) -> None:
    for user, name in (("wendy", "team/app"), ("rita", "team/app"), (None, "public/hello")):
        async with browser(registry.app, user) as client:
            url = f"/ui/r/{name}/-/delete-repository"
            assert (await client.get(url)).status_code == 403
            # A forged POST with everything right but the permission (a valid CSRF token for
            # this browser, from the one form every visitor gets).
            csrf = csrf_of(page(await client.get("/ui/sign-in")))
            forged = await client.post(url, data={"csrf": csrf, "confirm": name})
            assert forged.status_code == 403
            assert page(forged).find("h1").clean_text == "Refused"
        assert (await tags_list(registry.app, name)).status_code == 200


async def test_a_get_never_deletes_and_a_wrong_name_or_token_is_refused(registry: Seeded) -> None:
    url = "/ui/r/team/app/-/delete-repository"
    async with browser(registry.app, "root") as client:
        confirm = page(await client.get(url))
        csrf = csrf_of(confirm)
        response = await client.get(f"{url}?confirm=team/app&csrf={csrf}")
        assert response.status_code == 200
        assert not page(response).has_id("mistyped")
        for typed in ("team/ap", "TEAM/APP", " team/app", ""):
            wrong = await client.post(url, data={"csrf": csrf, "confirm": typed})
            assert wrong.status_code == 400
            assert page(wrong).by_id("mistyped").find("code").clean_text == "team/app"
        for data in ({"confirm": "team/app"}, {"confirm": "team/app", "csrf": csrf[:-2]}):
            assert (await client.post(url, data=data)).status_code == 403
    assert (await tags_list(registry.app, "team/app")).status_code == 200


async def test_admin_deletes_a_repository_after_typing_its_name(registry: Seeded) -> None:
    async with browser(registry.app, "root") as client:
        document = page(await client.get("/ui/r/team/app"))
        link = document.by_id("delete-repository").attrs["href"]
        assert link == "/ui/r/team/app/-/delete-repository"
        confirm = page(await client.get(link))
        form = confirm.find("form", action=link)
        assert form.attrs["method"] == "post"
        assert confirm.find("label", for_="confirm").find("code").clean_text == "team/app"
        # The confirmation says what goes: 4 tags, and the manifests behind them.
        assert "4 tags" in confirm.find("main").clean_text
        response = await client.post(
            link, data={"csrf": csrf_of(form), "confirm": form.find("code").clean_text}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/?deleted=team%2Fapp"
        after = page(await client.get(response.headers["location"]))
        notice = after.find("p", class_="notice")
        assert notice.clean_text == "Deleted the repository team/app."
        assert [row[0] for row in after.rows("repositories")] == ["public/hello", "secret/vault"]
        assert (await client.get("/ui/r/team/app")).status_code == 404
        # Deleting it again finds nothing.
        again = await client.post(link, data={"csrf": csrf_of(form), "confirm": "team/app"})
        assert again.status_code == 404
        # A crafted link cannot claim a delete of a repository that is still there.
        assert not page(await client.get("/ui/?deleted=public/hello")).find_all(class_="notice")
    listed = await tags_list(registry.app, "team/app")
    assert listed.status_code == 404
    assert listed.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    # Nor tell a non-admin anything about a name (here one they could pull before).
    async with browser(registry.app, "wendy") as client:
        assert not page(await client.get("/ui/?deleted=team/app")).find_all(class_="notice")


async def test_no_repository_delete_when_deletion_is_disabled(
    tmp_path: Path, auth_files: dict[str, Path]
) -> None:
    async with (
        seeded_registry(tmp_path, auth_files, delete_enabled=False) as registry,
        browser(registry.app, "root") as client,
    ):
        document = page(await client.get("/ui/r/team/app"))
        assert not may_delete_repository(document)
        url = "/ui/r/team/app/-/delete-repository"
        posted = await client.post(url, data={"csrf": csrf_of(document), "confirm": "team/app"})
        assert posted.status_code == 403
        assert (await tags_list(registry.app, "team/app")).status_code == 200


async def test_an_admins_api_token_session_may_not_delete_a_repository(registry: Seeded) -> None:
    """No token scope grants ``admin``: a session opened with root's token is refused exactly
    as the same token is by ``DELETE /api/v1/repositories/NAME``."""
    async with browser(registry.app, "root") as client:
        csrf = csrf_of(page(await client.get("/ui/tokens")))
        scopes = "repository:team/*:pull,push,delete"
        created = await client.post(
            "/ui/tokens", data={"csrf": csrf, "scopes": scopes, "expires": "7d"}
        )
        secret = str(page(created).by_id("new-token").attrs["value"])
    async with browser(registry.app) as client:
        assert (await sign_in(client, "root", secret)).status_code == 303
        document = page(await client.get("/ui/r/team/app"))
        assert data_value(document, "usage-tags") == 4
        assert not may_delete_repository(document)
        url = "/ui/r/team/app/-/delete-repository"
        posted = await client.post(url, data={"csrf": csrf_of(document), "confirm": "team/app"})
        assert posted.status_code == 403
        api = await client.delete("/api/v1/repositories/team/app", auth=("root", secret))
        assert api.status_code == 403
        assert (await client.get("/ui/usage")).status_code == 404
    assert (await tags_list(registry.app, "team/app")).status_code == 200


async def test_a_big_repositorys_usage_is_shown_on_request(
    registry: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``USAGE_INLINE_TAGS`` tags, counting the bytes waits for a click, so the tag
    pages of a huge repository stay fast."""
    monkeypatch.setattr(pages, "USAGE_INLINE_TAGS", 3)
    async with browser(registry.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app?sort=time"))
        assert not document.has_id("usage-bytes")
        link = str(document.by_id("show-usage").attrs["href"])
        assert link == "/ui/r/team/app?sort=time&page=1&usage=1#usage-heading"
        shown = page(await client.get(link.partition("#")[0]))
        assert data_value(shown, "usage-tags") == 4
        assert shown.has_id("quota-bytes")
        # Small repositories show it at once.
        assert data_value(page(await client.get("/ui/r/public/hello")), "usage-tags") == 1


@pytest.mark.parametrize("user", [None, "rita", "wendy", "root"])
async def test_only_admins_get_the_usage_overview(registry: Seeded, user: str | None) -> None:
    async with browser(registry.app, user) as client:
        front = page(await client.get("/ui/"))
        response = await client.get("/ui/usage")
        if user != "root":
            assert "/ui/usage" not in front.links()
            assert response.status_code == 404
            return
        assert "/ui/usage" in front.find("header").links()
        document = page(response)
    expected = cli_report(registry.data_dir)
    rows = document.rows("namespaces")
    assert [row[:3] for row in rows] == [
        ["(top level)" if not ns["name"] else ns["name"], str(ns["repositories"]), str(ns["blobs"])]
        for ns in expected["namespaces"]
    ]
    assert [row[0] for row in rows] == ["public", "secret", "team"]
    sizes = [int(str(d.attrs["value"])) for d in document.by_id("namespaces").find_all("data")]
    assert sizes == [ns["bytes"] for ns in expected["namespaces"]]
    assert data_value(document, "distinct-bytes") == expected["distinct_bytes"]
    assert data_value(document, "stored-bytes") == expected["stored_bytes"]


async def test_without_auth_everyone_sees_usage_and_may_delete(tmp_path: Path) -> None:
    """Auth off (loopback only): the gate allows everything, the UI as much as the API."""
    app = create_app(load_settings(storage={"data_dir": tmp_path / "d"}))
    async with app.router.lifespan_context(app), browser(app) as client:
        await push_image(client, "any/thing", "v1")
        document = page(await client.get("/ui/r/any/thing"))
        assert data_value(document, "usage-tags") == 1
        assert may_delete_repository(document)
        assert (await client.get("/ui/usage")).status_code == 200
        url = "/ui/r/any/thing/-/delete-repository"
        csrf = csrf_of(page(await client.get(url)))
        response = await client.post(url, data={"csrf": csrf, "confirm": "any/thing"})
        assert response.status_code == 303
        assert (await client.get("/v2/any/thing/tags/list")).status_code == 404
