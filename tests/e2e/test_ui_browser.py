"""The web UI in a real browser: Debian's chromium, driven by Playwright, against a real
``moorage serve`` with auth and a policy, holding images pushed by skopeo.

One browser serves the whole module (starting chromium is the slow part). Screenshots are
written to the test's temporary directory for a person to look at; they are not committed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from moorage.auth.htpasswd import add_user

from .support import (
    MT_OCI_CONFIG,
    MT_OCI_EMPTY,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    OciLayout,
    RegistryServer,
    Tool,
    canonical_json,
    fail_missing,
    new_image_layout,
    push_layout,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POLICY = """
admins: [root]
rules:
  - repositories: ["team/*"]
    users: [rita]
    actions: [pull]
"""
PASSWORDS = {"root": "root-browser-pw", "rita": "rita-browser-pw"}
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
SIGNATURE_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass
class Site:
    server: RegistryServer
    shots: Path
    referrer: str
    hostile: str


def hostile_image(layout: OciLayout) -> None:
    """An image whose labels, annotations and history carry markup and script."""
    layer = layout.add_blob(b"\x1f\x8b" + b"\0" * 18, MT_OCI_LAYER_GZIP)
    config = layout.add_blob(
        canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"evil": HOSTILE}, "Env": [HOSTILE]},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
                "history": [{"created_by": HOSTILE, "comment": HOSTILE}],
            }
        ),
        MT_OCI_CONFIG,
    )
    manifest = layout.add_blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": config.to_json(),
                "layers": [layer.to_json()],
                "annotations": {"note": HOSTILE},
            }
        ),
        MT_OCI_MANIFEST,
    )
    layout.tag(manifest, "hostile")


def push_signature(server: RegistryServer, repository: str, subject: str) -> str:
    """A referrer of ``subject`` (skopeo copies images, not artifacts): pushed over the API."""
    auth = ("root", PASSWORDS["root"])
    with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
        response = client.get(
            f"/v2/{repository}/manifests/{subject}", headers={"Accept": MT_OCI_MANIFEST}
        )
        subject_size = len(response.content)
        digests = []
        for data in (b"{}", b"a signature"):
            digest = sha256_digest(data)
            pushed = client.post(f"/v2/{repository}/blobs/uploads/?digest={digest}", content=data)
            assert pushed.status_code == 201, pushed.text
            digests.append(digest)
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": SIGNATURE_TYPE,
            "config": {"mediaType": MT_OCI_EMPTY, "digest": digests[0], "size": 2},
            "layers": [{"mediaType": SIGNATURE_TYPE, "digest": digests[1], "size": 11}],
            "subject": {"mediaType": MT_OCI_MANIFEST, "digest": subject, "size": subject_size},
        }
        payload = json.dumps(body).encode()
        digest = sha256_digest(payload)
        response = client.put(
            f"/v2/{repository}/manifests/{digest}",
            content=payload,
            headers={"Content-Type": MT_OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text
        return digest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("ui-browser")
    htpasswd = workdir / "htpasswd"
    for user, secret in PASSWORDS.items():
        add_user(htpasswd, user, secret)
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    server = RegistryServer(
        "moorage",
        workdir,
        extra_args=["--htpasswd", str(htpasswd), "--policy", str(policy)],
        # One worker per CPU now: a token revoked through one worker is refused by the others
        # only once their cache of verified tokens lets go of it (auth.api_token_cache_seconds,
        # 30 s). Without that cache, the revocation test sees what every worker does at once.
        env={"MOORAGE_AUTH__API_TOKEN_CACHE_SECONDS": "0"},
    )
    with server:
        skopeo = Tool("skopeo", registry=server)
        creds = ("--dest-creds", f"root:{PASSWORDS['root']}")
        layout_dir = workdir / "layout"
        app = new_image_layout(layout_dir, "ui-app", tag="v1", labels={"team": "web"})
        layout = OciLayout(layout_dir)
        new_image_layout(layout_dir, "ui-old", tag="old")
        hostile_image(layout)
        pushed = {}
        for tag in ("v1", "old", "hostile"):
            dest = f"docker://{server.host}/team/app:{tag}"
            pushed[tag] = push_layout(skopeo, layout, tag, dest, workdir, *creds)
        assert pushed["v1"] == app.manifest.digest
        referrer = push_signature(server, "team/app", pushed["v1"])
        shots = workdir / "screenshots"
        shots.mkdir()
        yield Site(server, shots, referrer, pushed["hostile"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        fail_missing("chromium", f"Playwright drives Debian's browser at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(
            f"playwright is not installed ({error}); install it with: "
            ".venv/bin/pip install -e '.[test]'",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as error:
            fail_missing("chromium", f"it did not start: {str(error)[:300]}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh browser context (no cookies) that may use the clipboard."""
    context = browser.new_context(base_url=site.server.url, viewport={"width": 1100, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.server.url)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def sign_in(page: Any, user: str) -> None:
    page.goto("/ui/")
    page.get_by_role("link", name="Sign in").first.click()
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password or API token").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("[data-testid=user]").inner_text() == user


def clipboard(page: Any) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def test_sign_in_browse_to_an_image_copy_its_pull_command_and_open_a_referrer(
    page: Any, site: Site
) -> None:
    page.goto("/ui/")
    # Anonymous visitors see nothing here: every repository needs a sign-in.
    assert page.locator("#repositories").count() == 0
    sign_in(page, "rita")
    page.get_by_role("link", name="team/app").click()
    page.screenshot(path=site.shots / "repository.png", full_page=True)
    page.locator("#tags").get_by_role("link", name="v1", exact=True).click()
    assert page.locator("h1").inner_text() == "team/app:v1"
    page.screenshot(path=site.shots / "image.png", full_page=True)
    page.locator("button[data-copy=pull-tag]").click()
    page.get_by_role("button", name="Copied").first.wait_for()
    assert clipboard(page) == f"podman pull {site.server.host}/team/app:v1"
    # Its signature, grouped under its artifact type, opens and points back.
    assert SIGNATURE_TYPE in page.locator("#referrers-heading ~ h3").all_inner_texts()
    page.locator(f"a[href$='{site.referrer}']").click()
    assert page.locator("#digest").inner_text() == site.referrer
    assert page.get_by_text("Refers to").count() == 1
    # A reader is offered no delete, of a tag or of the repository, but sees its usage.
    assert page.locator("a.danger").count() == 0
    page.goto("/ui/r/team/app")
    assert int(page.locator("#usage-bytes").get_attribute("value")) > 0
    assert page.get_by_role("link", name="Delete repository").count() == 0
    assert page.locator("header").get_by_role("link", name="Usage").count() == 0


def test_phone_width_page_is_readable(browser: Any, site: Site) -> None:
    context = browser.new_context(base_url=site.server.url, viewport={"width": 360, "height": 740})
    page = context.new_page()
    sign_in(page, "rita")
    page.goto("/ui/r/team/app/-/m/v1")
    # Nothing but the tables' own scrolling areas is wider than the screen.
    width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=site.shots / "image-phone.png", full_page=True)
    context.close()
    assert width <= 360


def test_pages_work_without_javascript(browser: Any, site: Site) -> None:
    context = browser.new_context(base_url=site.server.url, java_script_enabled=False)
    page = context.new_page()
    sign_in(page, "rita")
    page.get_by_role("link", name="team/app").click()
    page.locator("#tags").get_by_role("link", name="v1", exact=True).click()
    # The command is there to select and copy; the Copy button is the script's to show.
    command = page.locator("#pull-tag")
    assert command.input_value() == f"podman pull {site.server.host}/team/app:v1"
    assert not page.locator("button[data-copy=pull-tag]").is_visible()
    page.get_by_role("button", name="Sign out").click()
    assert page.locator("[data-testid=user]").count() == 0
    context.close()


def test_keyboard_reaches_the_content_and_the_sign_in_form(page: Any, site: Site) -> None:
    page.goto("/ui/sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    # Fill and send the form with the keyboard alone.
    page.get_by_label("User name").focus()
    page.keyboard.type("rita")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORDS["rita"])
    page.keyboard.press("Enter")
    page.locator("[data-testid=user]").wait_for()
    assert page.locator("[data-testid=user]").inner_text() == "rita"


def test_admin_deletes_a_tag_after_confirming(page: Any, site: Site) -> None:
    sign_in(page, "root")
    page.goto("/ui/r/team/app")
    assert page.locator("#tags").get_by_role("link", name="old", exact=True).count() == 1
    page.locator("a[href='/ui/r/team/app/-/delete?ref=old']").click()
    assert page.locator("h1").inner_text() == "Delete tag?"
    page.screenshot(path=site.shots / "confirm-delete.png")
    page.get_by_role("button", name="Delete").click()
    assert page.get_by_role("status").inner_text() == "Deleted old."
    assert page.locator("#tags").get_by_role("link", name="old", exact=True).count() == 0
    with httpx.Client(base_url=site.server.url, auth=("root", PASSWORDS["root"])) as api:
        assert "old" not in api.get("/v2/team/app/tags/list").json()["tags"]


def push_small_image(server: RegistryServer, repository: str, tag: str) -> None:
    """A one-layer image over the API (quicker than a skopeo copy for a throwaway)."""
    config = canonical_json({"architecture": "amd64", "os": "linux"})
    layer = b"a throwaway layer"
    with httpx.Client(base_url=server.url, auth=("root", PASSWORDS["root"]), timeout=30) as api:
        for data in (config, layer):
            digest = sha256_digest(data)
            pushed = api.post(f"/v2/{repository}/blobs/uploads/?digest={digest}", content=data)
            assert pushed.status_code == 201, pushed.text
        body = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {
                "mediaType": MT_OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": MT_OCI_LAYER_GZIP,
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                }
            ],
        }
        response = api.put(
            f"/v2/{repository}/manifests/{tag}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": MT_OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text


def test_admin_deletes_a_repository_after_typing_its_name(page: Any, site: Site) -> None:
    push_small_image(site.server, "team/scratch", "v1")
    sign_in(page, "root")
    page.goto("/ui/r/team/scratch")
    assert page.locator("#usage-tags").inner_text() == "1"
    page.get_by_role("link", name="Delete repository").click()
    assert page.locator("h1").inner_text() == "Delete the repository team/scratch?"
    page.get_by_label("Type team/scratch to confirm").fill("team/scratch")
    page.screenshot(path=site.shots / "confirm-delete-repository.png", full_page=True)
    page.get_by_role("button", name="Delete repository").click()
    assert page.get_by_role("status").inner_text() == "Deleted the repository team/scratch."
    assert page.locator("#repositories").get_by_role("link", name="team/scratch").count() == 0
    with httpx.Client(base_url=site.server.url, auth=("root", PASSWORDS["root"])) as api:
        listed = api.get("/v2/team/scratch/tags/list")
        assert listed.status_code == 404
        assert listed.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    # The admin's usage overview, one row per namespace.
    page.locator("header").get_by_role("link", name="Usage").click()
    assert page.locator("#namespaces tbody tr td:first-child").all_inner_texts() == ["team"]
    page.screenshot(path=site.shots / "usage-overview.png", full_page=True)


def test_create_copy_and_revoke_an_api_token(page: Any, site: Site) -> None:
    sign_in(page, "rita")
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Description").fill("browser test")
    page.get_by_label("Scopes").fill("repository:team/*:pull")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").input_value()
    assert secret.startswith("moor_")
    page.locator("button[data-copy=new-token]").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert clipboard(page) == secret
    page.screenshot(path=site.shots / "token-created.png", full_page=True)
    with httpx.Client(base_url=site.server.url, auth=("rita", secret)) as api:
        assert api.get("/v2/team/app/tags/list").status_code == 200
    page.get_by_role("button", name="Revoke token").first.click()
    row = page.locator("#tokens tbody tr").first
    assert row.locator("td").nth(5).inner_text() == "revoked"
    with httpx.Client(base_url=site.server.url, auth=("rita", secret)) as api:
        assert api.get("/v2/team/app/tags/list").status_code == 401


def test_hostile_image_is_shown_as_text_and_runs_nothing(page: Any, site: Site) -> None:
    dialogs: list[str] = []

    def dismissed(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismissed)
    sign_in(page, "rita")
    page.goto("/ui/r/team/app/-/m/hostile")
    page.screenshot(path=site.shots / "hostile.png", full_page=True)
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    # Only our own script and no image exist; the markup is visible as text.
    assert page.evaluate("[...document.scripts].map(s => s.getAttribute('src'))") == [
        "/ui/static/ui.js"
    ]
    assert page.locator("img").count() == 0
    assert HOSTILE in page.locator("#annotations").inner_text()
    assert HOSTILE in page.locator("#history").inner_text()
    assert HOSTILE in page.locator("#labels").inner_text()
    assert HOSTILE in page.locator("#env").inner_text()


def test_sign_out(page: Any, site: Site) -> None:
    sign_in(page, "rita")
    page.get_by_role("button", name="Sign out").click()
    assert page.locator("[data-testid=user]").count() == 0
    response = page.goto("/ui/r/team/app")
    assert response is not None and response.status == 404
