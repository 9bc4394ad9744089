"""The local-file read path of blob GET (moorage.api.file_stream): exact bytes whether the file
is in the page cache (read in the event loop) or not (read on a worker thread), a blob
deleted once its file is open still sent whole, and no more reading once the client is gone."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from moorage.api import file_stream
from moorage.api.file_stream import PIECE, BlobFileShort, FileRangeResponse
from moorage.storage.filesystem import FilesystemBlobStore
from tests.api.support import error_code, push_blob

# Two and a half pieces: whole pieces, a last short one, and ranges across a boundary.
DATA = os.urandom(PIECE * 5 // 2)


@pytest.fixture
def waited_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The offsets read on a worker thread (the page cache could not answer)."""
    offsets: list[int] = []
    read_waiting = file_stream._read_waiting

    def counting(fd: int, piece: memoryview, offset: int) -> int:
        offsets.append(offset)
        return read_waiting(fd, piece, offset)

    monkeypatch.setattr(file_stream, "_read_waiting", counting)
    return offsets


def blob_file(tmp_path: Path, digest: str) -> Path:
    return next((tmp_path / "data" / "blobs").rglob(digest.split(":")[1]))


def evict(path: Path) -> None:
    """Drop the file from the page cache (its pages must be clean: written back)."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def can_evict(directory: Path) -> bool:
    """Whether files here leave the page cache when asked (not on tmpfs, for one)."""
    path = directory / "probe"
    path.write_bytes(DATA)
    evict(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(4096)], 0, os.RWF_NOWAIT)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
        path.unlink()


RANGES = [
    ({}, 200, DATA),
    ({"Range": f"bytes={PIECE - 3}-{PIECE + 3}"}, 206, DATA[PIECE - 3 : PIECE + 4]),
    ({"Range": f"bytes={PIECE * 2}-"}, 206, DATA[PIECE * 2 :]),
    ({"Range": "bytes=-10"}, 206, DATA[-10:]),
]


async def test_a_cached_blob_is_read_without_a_worker_thread(
    client: httpx.AsyncClient, waited_reads: list[int]
) -> None:
    digest = await push_blob(client, "fs/cached", DATA)
    for headers, status, expected in RANGES:
        got = await client.get(f"/v2/fs/cached/blobs/{digest}", headers=headers)
        assert got.status_code == status
        assert got.headers["content-length"] == str(len(expected))
        assert got.content == expected
    assert waited_reads == []


async def test_an_uncached_blob_is_read_on_a_worker_thread(
    client: httpx.AsyncClient, tmp_path: Path, waited_reads: list[int]
) -> None:
    if not can_evict(tmp_path):
        pytest.skip("this filesystem keeps files in memory (tmpfs?)")
    digest = await push_blob(client, "fs/cold", DATA)
    path = blob_file(tmp_path, digest)
    for headers, status, expected in RANGES:
        evict(path)
        waited_reads.clear()
        got = await client.get(f"/v2/fs/cold/blobs/{digest}", headers=headers)
        assert got.status_code == status
        assert got.content == expected
        assert waited_reads, "the first piece was not cached: read on a thread"


async def test_a_filesystem_without_nowait_reads_reads_on_a_worker_thread(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, waited_reads: list[int]
) -> None:
    def refused(*args: Any) -> int:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    digest = await push_blob(client, "fs/nowait", DATA)
    monkeypatch.setattr(file_stream, "_RWF_NOWAIT", 0x8)
    monkeypatch.setattr(os, "preadv", _only_without_flags(refused))
    got = await client.get(f"/v2/fs/nowait/blobs/{digest}")
    assert got.content == DATA
    assert waited_reads == [0, PIECE, PIECE * 2]


def _only_without_flags(refused: Any) -> Any:
    """os.preadv that calls ``refused`` when given flags (as a filesystem without RWF_NOWAIT)."""
    preadv = os.preadv

    def call(fd: int, buffers: list[memoryview], offset: int, flags: int = 0) -> int:
        return refused() if flags else preadv(fd, buffers, offset)

    return call


async def test_a_file_gone_between_the_lookup_and_the_open_is_a_404_envelope(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = await push_blob(client, "fs/race", DATA)
    blob_file(tmp_path, digest).unlink()
    # The lookup still saw the file (the collector deleted it right after).
    monkeypatch.setattr(FilesystemBlobStore, "stat", lambda *args: len(DATA))
    for headers in ({}, {"Range": "bytes=0-9"}):
        got = await client.get(f"/v2/fs/race/blobs/{digest}", headers=headers)
        assert got.status_code == 404
        assert error_code(got) == "BLOB_UNKNOWN"


class Recorder:
    """An ASGI ``send`` that keeps the body and runs ``after_first`` after the first piece."""

    def __init__(self, after_first: Any = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.after_first = after_first

    async def __call__(self, message: Any) -> None:
        # Never gives the event loop a turn, as granian's send when the socket has room.
        self.messages.append(message)
        if message["type"] == "http.response.body" and self.after_first is not None:
            self.after_first()
            self.after_first = None

    @property
    def body(self) -> bytes:
        return b"".join(bytes(m["body"]) for m in self.messages[1:])

    def pieces(self) -> Iterator[int]:
        return (len(m["body"]) for m in self.messages[1:])


def open_response(path: Path, first: int, length: int) -> FileRangeResponse:
    fd = os.open(path, os.O_RDONLY)
    headers = {"Content-Length": str(length)}
    return FileRangeResponse(fd, first, length, 200, headers, "application/octet-stream")


async def noop_receive() -> dict[str, Any]:
    """A client that stays connected."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def test_a_blob_deleted_mid_stream_is_sent_whole(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    send = Recorder(after_first=path.unlink)
    await open_response(path, 0, len(DATA))({"type": "http"}, noop_receive, send)
    assert not path.exists()
    assert send.body == DATA
    assert list(send.pieces()) == [PIECE, PIECE, PIECE // 2]
    assert send.messages[-1]["more_body"] is False


async def test_a_file_shorter_than_promised_cuts_the_response(tmp_path: Path) -> None:
    # A stored blob never shrinks; if its file did, the client must see a short body (the
    # server cuts the connection), never bytes of something else.
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    send = Recorder(after_first=lambda: os.truncate(path, PIECE + 5))
    with pytest.raises(BlobFileShort):
        await open_response(path, 0, len(DATA))({"type": "http"}, noop_receive, send)
    assert send.body == DATA[: PIECE + 5]
    assert all(m.get("more_body", True) for m in send.messages[1:])


async def test_an_empty_blob_is_one_empty_body(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"")
    send = Recorder()
    await open_response(path, 0, 0)({"type": "http"}, noop_receive, send)
    assert send.body == b""
    assert [m["type"] for m in send.messages] == ["http.response.start", "http.response.body"]


async def test_a_client_gone_mid_stream_stops_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    gone = anyio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    send = Recorder(after_first=gone.set)
    await open_response(path, 0, len(DATA))({"type": "http"}, receive, send)
    # Cached reads and sends that never wait: the response itself lets the listener run.
    assert send.body == DATA[:PIECE]
