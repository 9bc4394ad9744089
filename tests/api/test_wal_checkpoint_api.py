"""Each server process copies SQLite's log into the database from a thread of its own, started
and stopped with the app (metadata/wal_checkpointer.py)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from tests.api.support import ClientFactory
from tests.support_wal import uncopied_pages


def _checkpointer_threads() -> int:
    return sum(t.name == "moorage-wal-checkpoint" for t in threading.enumerate())


async def test_a_push_is_copied_from_the_log_without_another_commit(
    make_client: ClientFactory, storage: dict[str, Any]
) -> None:
    database = Path(storage["data_dir"]) / "moorage.db"
    async with make_client() as client:
        assert _checkpointer_threads() == 1
        body = b"layer bytes"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        response = await client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", content=body)
        assert response.status_code == 201
        deadline = time.monotonic() + 10
        while uncopied_pages(database)[1] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        frames, uncopied = uncopied_pages(database)
        assert frames > 0 and uncopied == 0
    assert _checkpointer_threads() == 0
