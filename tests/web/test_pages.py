"""The UI's pages in process: what each kind of caller sees and may do, parsed as HTML."""

from __future__ import annotations

import httpx
import pytest

from moorage.app import create_app
from moorage.config import load_settings
from tests.web.conftest import Seeded
from tests.web.html import Element
from tests.web.support import HOSTILE, SBOM_TYPE, SIGNATURE_TYPE, browser, csrf_of, page


def repository_names(document: Element) -> list[str]:
    if not document.has_id("repositories"):
        return []
    return [row[0] for row in document.rows("repositories")]


def tag_names(document: Element) -> list[str]:
    return [row[0] for row in document.rows("tags")] if document.has_id("tags") else []


async def all_repository_names(client: httpx.AsyncClient, url: str = "/ui/") -> list[str]:
    names: list[str] = []
    while True:
        document = page(await client.get(url))
        names += repository_names(document)
        following = document.find_all("a", rel="next")
        if not following:
            return names
        url = str(following[0].attrs["href"])


async def test_root_redirects_to_the_ui(seeded: Seeded) -> None:
    async with browser(seeded.app) as client:
        response = await client.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "/ui/"


@pytest.mark.parametrize(
    ("user", "visible"),
    [
        (None, ["public/hello"]),
        ("rita", ["public/hello", "team/app"]),
        ("wendy", ["public/hello", "team/app"]),
        ("root", ["public/hello", "secret/vault", "team/app"]),
    ],
)
async def test_each_caller_sees_only_the_repositories_they_may_pull(
    seeded: Seeded, user: str | None, visible: list[str]
) -> None:
    async with browser(seeded.app, user) as client:
        assert await all_repository_names(client) == visible


async def test_repository_list_shows_tag_count_size_and_last_push(seeded: Seeded) -> None:
    async with browser(seeded.app, "root") as client:
        document = page(await client.get("/ui/?q=team&match=prefix"))
        [row] = document.rows("repositories")
        assert row[0] == "team/app"
        assert row[1] == "4"  # v1, hostile, arm-only, multi
        assert row[2].endswith("B")
        assert row[3] == "just now"
        time = document.by_id("repositories").find("time")
        assert time.attrs["title"] and time.attrs["title"].endswith("UTC")
        assert time.attrs["datetime"]


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("q=app&match=contains", ["team/app"]),
        ("q=app&match=prefix", []),
        ("q=te&match=prefix", ["team/app"]),
        ("q=e&match=contains", ["public/hello", "secret/vault", "team/app"]),
        ("q=%25&match=contains", []),  # LIKE wildcards are literal
        ("q=_&match=contains", []),
    ],
)
async def test_search_by_prefix_and_substring(seeded: Seeded, query: str, found: list[str]) -> None:
    async with browser(seeded.app, "root") as client:
        assert repository_names(page(await client.get(f"/ui/?{query}"))) == found


async def test_repository_list_pages_with_a_cursor(seeded: Seeded) -> None:
    # page_size is 3 in these tests; add repositories so that there are two pages.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=seeded.app),
        base_url="http://registry",
        auth=("root", "root-pw-123"),
    ) as api:
        from tests.api.support import push_image

        for name in ("public/a", "public/b", "public/c"):
            await push_image(api, name, "v1", seed=name.encode())
    async with browser(seeded.app) as client:
        first = page(await client.get("/ui/"))
        assert repository_names(first) == ["public/a", "public/b", "public/c"]
        assert await all_repository_names(client) == [
            "public/a",
            "public/b",
            "public/c",
            "public/hello",
        ]


async def test_a_repository_the_caller_cannot_pull_looks_exactly_like_a_missing_one(
    seeded: Seeded,
) -> None:
    for user in (None, "rita"):
        async with browser(seeded.app, user) as client:
            await client.get("/ui/")  # the CSRF cookie, so both pages carry the same token
            for suffix in ("", "/-/m/v1", "/-/delete?ref=v1"):
                hidden = await client.get(f"/ui/r/secret/vault{suffix}")
                missing = await client.get(f"/ui/r/secret/nothing{suffix}")
                assert hidden.status_code == missing.status_code == 404
                assert _named_alike(hidden) == _named_alike(missing)
                assert hidden.headers.keys() == missing.headers.keys()


async def test_repository_page_lists_tags_with_digest_size_time_and_platforms(
    seeded: Seeded,
) -> None:
    async with browser(seeded.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app?sort=name"))
        rows = document.rows("tags")
        assert [row[0] for row in rows] == ["arm-only", "hostile", "multi"]
        multi = rows[2]
        assert multi[1] == seeded.digests["multi"][:19]
        assert multi[4] == "linux/amd64 linux/arm64"
        # Page two holds the fourth tag.
        second = page(await client.get("/ui/r/team/app?sort=name&page=2"))
        assert tag_names(second) == ["v1"]
        pull = second.by_id("tags").find("input", class_="command")
        assert pull.attrs["value"] == "podman pull registry/team/app:v1"
        assert second.find("button", class_="copy-button").attrs["data-copy"] == pull.attrs["id"]


async def test_tags_sort_by_push_time_newest_first(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app?sort=time"))
        assert tag_names(document) == ["multi", "arm-only", "hostile"]


async def test_untagged_manifests_are_shown_on_request(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app"))
        assert not document.has_id("untagged")
        document = page(await client.get("/ui/r/team/app?untagged=1"))
        shown = {row[0] for row in document.rows("untagged")}
        assert shown == {seeded.digests["signature"][:19], seeded.digests["sbom"][:19]}


async def test_image_page_shows_config_layers_history_and_referrers(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app/-/m/v1"))
        assert document.by_id("digest").text == seeded.digests["v1"]
        config = document.by_id("config").clean_text
        assert "/bin/app" in config and "--serve" in config
        assert [li.clean_text for li in document.by_id("env").find_all("li")] == [
            "PATH=/usr/bin",
            "MODE=prod",
        ]
        layers = document.rows("layers")
        assert [row[3] for row in layers] == ["900 B", "9 B"]
        assert document.by_id("history").clean_text == "COPY app /bin/app"
        [label] = document.by_id("labels").find("tbody").find_all("tr")
        cells = [cell.clean_text for cell in label.children if isinstance(cell, Element)]
        assert cells == ["org.opencontainers.image.title", "app"]
        commands = {
            i.attrs["id"]: i.attrs["value"] for i in document.find_all("input", class_="command")
        }
        assert commands == {
            "pull-tag": "podman pull registry/team/app:v1",
            "pull-digest": f"podman pull registry/team/app@{seeded.digests['v1']}",
        }
        headings = [h.clean_text for h in document.find_all("h3")]
        assert SIGNATURE_TYPE in headings and SBOM_TYPE in headings
        signature = f"/ui/r/team/app/-/m/{seeded.digests['signature']}"
        assert signature in document.links()
        # Each referrer opens, and points back at its subject.
        referrer = page(await client.get(signature))
        assert f"/ui/r/team/app/-/m/{seeded.digests['v1']}" in referrer.links()


async def test_index_page_lists_each_platform_manifest(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        document = page(await client.get("/ui/r/team/app/-/m/multi"))
        rows = document.rows("platforms")
        assert [row[0] for row in rows] == ["linux/amd64", "linux/arm64"]
        assert f"/ui/r/team/app/-/m/{seeded.digests['v1']}" in document.links()


async def test_hostile_text_is_escaped_and_no_inline_script_exists(seeded: Seeded) -> None:
    async with browser(seeded.app, "rita") as client:
        response = await client.get("/ui/r/team/app/-/m/hostile")
        document = page(response)
        # The one script is our own file; the hostile text is text, wherever it appears.
        scripts = document.find_all("script")
        assert [s.attrs.get("src") for s in scripts] == ["/ui/static/ui.js"]
        assert all(not s.text.strip() for s in scripts)
        assert not document.find_all("img")
        for element in document.iter():
            assert not any(name.startswith("on") for name in element.attrs), element
            assert "style" not in element.attrs
        assert not document.find_all("style")
        annotations = document.by_id("annotations").find("tbody").clean_text
        assert HOSTILE in annotations
        assert HOSTILE in document.by_id("history").text
        assert HOSTILE in document.by_id("labels").text
        assert HOSTILE in document.by_id("env").text


async def test_security_headers_on_pages_and_static_files(seeded: Seeded) -> None:
    async with browser(seeded.app) as client:
        for url in ("/ui/", "/ui/r/public/hello", "/ui/static/ui.css", "/ui/r/nothing"):
            response = await client.get(url)
            policy = response.headers["content-security-policy"]
            directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
            assert directives["script-src"] == "'self'"
            assert directives["default-src"] == "'none'"
            assert "unsafe-inline" not in policy
            assert directives["frame-ancestors"] == "'none'"
            assert response.headers["x-content-type-options"] == "nosniff"
            if not url.startswith("/ui/static/"):
                assert response.headers["cache-control"] == "no-store"


async def test_reader_and_writer_get_no_delete_and_cannot_post_one(seeded: Seeded) -> None:
    for user in ("rita", "wendy"):
        async with browser(seeded.app, user) as client:
            document = page(await client.get("/ui/r/team/app/-/m/v1"))
            assert not any("/-/delete" in link for link in document.links())
            confirm = await client.get("/ui/r/team/app/-/delete?ref=v1")
            assert confirm.status_code == 403
            csrf = csrf_of(document)
            posted = await client.post("/ui/r/team/app/-/delete", data={"csrf": csrf, "ref": "v1"})
            assert posted.status_code == 403
            assert "v1" in tag_names(page(await client.get("/ui/r/team/app?page=2")))


async def test_admin_deletes_a_tag_after_confirming(seeded: Seeded) -> None:
    async with browser(seeded.app, "root") as client:
        document = page(await client.get("/ui/r/team/app/-/m/hostile"))
        link = "/ui/r/team/app/-/delete?ref=hostile"
        assert link in document.links()
        confirm = page(await client.get(link))
        form = confirm.find("form", action="/ui/r/team/app/-/delete")
        assert form.attrs["method"] == "post"
        assert form.find("input", name="ref").attrs["value"] == "hostile"
        response = await client.post(
            "/ui/r/team/app/-/delete", data={"csrf": csrf_of(form), "ref": "hostile"}
        )
        assert response.status_code == 303
        after = page(await client.get(response.headers["location"]))
        assert "hostile" not in tag_names(after)
        assert after.find("p", class_="notice").clean_text == "Deleted hostile."
        # A crafted link cannot claim a delete of something that is still there.
        crafted = page(await client.get("/ui/r/team/app?deleted=v1"))
        assert not crafted.find_all("p", class_="notice")
        # The manifest stays, by digest; deleting it by digest is the other confirmation.
        by_digest = await client.get(f"/ui/r/team/app/-/m/{seeded.digests['hostile']}")
        assert by_digest.status_code == 200
        response = await client.post(
            "/ui/r/team/app/-/delete",
            data={"csrf": csrf_of(form), "ref": seeded.digests["hostile"]},
        )
        assert response.status_code == 303
        gone = await client.get(f"/ui/r/team/app/-/m/{seeded.digests['hostile']}")
        assert gone.status_code == 404


async def test_delete_without_a_valid_csrf_token_is_refused(seeded: Seeded) -> None:
    async with browser(seeded.app, "root") as client:
        document = page(await client.get("/ui/r/team/app"))
        good = csrf_of(document)
        for data in (
            {"ref": "v1"},
            {"ref": "v1", "csrf": "forged"},
            {"ref": "v1", "csrf": good[:-2]},
        ):
            response = await client.post("/ui/r/team/app/-/delete", data=data)
            assert response.status_code == 403
        # A token is only good with the cookie it was made for (another browser's is useless).
        async with browser(seeded.app, "root") as other:
            await other.get("/ui/")
            response = await other.post("/ui/r/team/app/-/delete", data={"ref": "v1", "csrf": good})
            assert response.status_code == 403
        # A GET never deletes.
        await client.get("/ui/r/team/app/-/delete?ref=v1&csrf=" + good)
        assert "v1" in tag_names(page(await client.get("/ui/r/team/app?page=2")))


async def test_ui_can_be_turned_off(tmp_path, auth_files) -> None:  # type: ignore[no-untyped-def]
    app = create_app(
        load_settings(storage={"data_dir": tmp_path / "d"}, auth=auth_files, ui={"enabled": False})
    )
    async with app.router.lifespan_context(app), browser(app) as client:
        assert (await client.get("/ui/")).status_code == 404
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/v2/")).status_code == 401


async def test_without_auth_everything_is_visible_and_there_is_no_sign_in(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(load_settings(storage={"data_dir": tmp_path / "d"}))
    async with app.router.lifespan_context(app), browser(app) as client:
        from tests.api.support import push_image

        await push_image(client, "any/thing", "v1")
        document = page(await client.get("/ui/"))
        assert repository_names(document) == ["any/thing"]
        assert "/ui/sign-in" not in " ".join(document.links())
        assert (await client.get("/ui/tokens")).status_code == 404


def _named_alike(response: httpx.Response) -> str:
    """The page with the two repository names made the same."""
    return response.text.replace("secret/vault", "X").replace("secret/nothing", "X")
