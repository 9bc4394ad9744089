"""Upload tests that look at the filesystem backend's own files (uploads/ on disk)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from tests.api.support import digest_of, error_code
from tests.api.test_uploads_api import patch, start

DATA = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(200))  # 6400 bytes


async def test_digest_mismatch_stores_nothing(client: httpx.AsyncClient, tmp_path: Path) -> None:
    wrong = digest_of(b"something else")
    response = await client.post(f"/v2/up/bad/blobs/uploads/?digest={wrong}", content=DATA)
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/up/bad/blobs/{wrong}")).status_code == 404
    assert (await client.head(f"/v2/up/bad/blobs/{digest_of(DATA)}")).status_code == 404
    assert list((tmp_path / "data" / "blobs").rglob("*/*/*")) == []
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


async def test_bytes_left_by_an_interrupted_append_are_dropped(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    location = await start(client, "up/torn")
    await patch(client, location, 0, DATA[:500])
    await patch(client, location, 500, DATA[500:1000])  # the session's row says 1000 now
    upload_file = tmp_path / "data" / "uploads" / location.rsplit("/", 1)[1]
    with upload_file.open("ab") as torn:  # what a SIGKILL mid-PATCH leaves behind
        torn.write(b"GARBAGE" * 100)
    assert (await patch(client, location, 1000, DATA[1000:])).status_code == 202
    assert (await client.put(f"{location}?digest={digest_of(DATA)}")).status_code == 201


async def test_sweep_removes_upload_bytes_no_session_owns(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    orphan = data_dir / "uploads" / ("f" * 32)
    orphan.write_bytes(b"left by a crash during a monolithic upload")
    live = await start(client, "up/live")
    await patch(client, live, 0, DATA[:10])
    metadata = SqlMetadataStore(make_engine(f"sqlite:///{data_dir / 'moorage.db'}"))
    storage = FilesystemBlobStore(data_dir)
    now = UploadService(metadata, storage, expiry_seconds=0.0)
    now.expire()
    assert not orphan.exists()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
async def test_upload_whose_bytes_were_lost_must_restart(
    client: httpx.AsyncClient, tmp_path: Path, damage: str
) -> None:
    location = await start(client, "up/lost")
    await patch(client, location, 0, DATA[:500])
    await patch(client, location, 500, DATA[500:1000])  # the session's row says 1000 now
    upload_file = tmp_path / "data" / "uploads" / location.rsplit("/", 1)[1]
    if damage == "truncate":  # what a power failure can do to unsynced bytes
        with upload_file.open("r+b") as f:
            f.truncate(500)
    else:
        upload_file.unlink()
    response = await patch(client, location, 1000, DATA[1000:])
    assert response.status_code == 400
    assert error_code(response) == "BLOB_UPLOAD_INVALID"
    assert (await client.get(location)).status_code == 404


async def test_a_session_with_only_its_first_patch_is_what_its_file_holds(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """No row records a first small PATCH's bytes (UploadService.patch_fresh): the session's
    file does. Were it cut (its bytes are synced before the 202, so here only by hand), the
    session reports what is left and the client goes on from there."""
    location = await start(client, "up/first")
    await patch(client, location, 0, DATA[:1000])
    upload_file = tmp_path / "data" / "uploads" / location.rsplit("/", 1)[1]
    with upload_file.open("r+b") as f:
        f.truncate(500)
    assert (await patch(client, location, 1000, DATA[1000:])).status_code == 416
    assert (await client.get(location)).headers["range"] == "0-499"
    assert (await patch(client, location, 500, DATA[500:])).status_code == 202
    assert (await client.put(f"{location}?digest={digest_of(DATA)}")).status_code == 201
    assert not upload_file.exists()
