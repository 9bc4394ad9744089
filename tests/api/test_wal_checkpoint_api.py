"""Each server process copies SQLite's log into the database from a thread of its own, started
and stopped with the app (metadata/wal_checkpointer.py)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

from tests.api.support import ClientFactory
from tests.support_wal import wait_until_copied


def _checkpointer_threads() -> int:
    return sum(t.name == "moorage-wal-checkpoint" for t in threading.enumerate())


async def test_a_push_is_copied_from_the_log_without_another_commit(
    make_client: ClientFactory, storage: dict[str, Any]
) -> None:
    database = Path(storage["data_dir"]) / "moorage.db"
    before = _checkpointer_threads()
    async with make_client() as client:
        assert _checkpointer_threads() == before + 1
        body = b"layer bytes"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        response = await client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", content=body)
        assert response.status_code == 201
        frames, uncopied = await asyncio.to_thread(wait_until_copied, database)
        assert frames > 0 and uncopied == 0
    assert _checkpointer_threads() == before
