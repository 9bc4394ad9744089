"""The UI's token pages and failed sign-ins leave audit entries, without any secret."""

from __future__ import annotations

import asyncio
from pathlib import Path

from moorage.metadata.audit_sql import SqlAuditLog
from moorage.metadata.sql import SqlMetadataStore, make_engine
from tests.web.conftest import Seeded
from tests.web.support import browser, csrf_of, page, sign_in


async def test_token_create_revoke_and_a_failed_sign_in_are_audited(
    seeded: Seeded, tmp_path: Path
) -> None:
    async with browser(seeded.app, "wendy") as client:
        form = page(await client.get("/ui/tokens")).find("form", action="/ui/tokens")
        created = await client.post(
            "/ui/tokens",
            data={"csrf": csrf_of(form), "scopes": "repository:team/*:pull", "expires": "30d"},
        )
        assert created.status_code == 201
        secret = str(page(created).by_id("new-token").attrs["value"])
        [row] = page(created).rows("tokens")
        revoke = page(await client.get("/ui/tokens")).find("form", action="/ui/tokens/revoke")
        revoked = await client.post(
            "/ui/tokens/revoke", data={"csrf": csrf_of(revoke), "id": row[0]}
        )
        assert revoked.status_code == 303
    async with browser(seeded.app, None) as anonymous:
        assert (await sign_in(anonymous, "wendy", "wrong-password")).status_code == 401
    await asyncio.sleep(1.3)  # written once a second
    log = SqlAuditLog(SqlMetadataStore(make_engine(f"sqlite:///{tmp_path / 'data/moorage.db'}")))
    entries = [
        e for e in await asyncio.to_thread(log.query) if e.action != "manifest.push"
    ]  # the fixture's pushes
    assert [(e.action, e.outcome, e.user, e.reference) for e in entries] == [
        ("token.create", "ok", "wendy", row[0]),
        ("token.revoke", "ok", "wendy", row[0]),
        ("login.failed", "refused", "wendy", None),
    ]
    assert all(e.request_id for e in entries)
    assert secret not in repr(entries) and "wrong-password" not in repr(entries)
