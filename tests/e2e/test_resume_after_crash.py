"""Uploads interrupted by a crash resume at once after the restart (issue 9, item 1).

A PATCH in flight when the server is SIGKILLed leaves its session leased to a process that no
longer runs. The restarted server must let the client continue from the offset the session's
GET announces: the next PATCH and the PUT succeed at once (no 416 for up to a lease's length),
or the session is gone (404) and the client starts over. Never a 416.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.support import RegistryServer

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
SIZE = 12 * MiB
CHUNK = 2 * MiB


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class StalledBody:
    """A request body that sends ``first`` bytes and then waits (the server is killed while it
    waits), so the request is certainly in flight at the kill."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        half = len(self.data) // 2
        for start in range(0, half, 256 * 1024):
            yield self.data[start : min(start + 256 * 1024, half)]
        self.sent.set()
        self.release.wait(30)
        yield self.data[half:]


def _in_flight(
    method: str, url: str, body: StalledBody, headers: dict[str, str] | None = None
) -> threading.Thread:
    """Send a request in the background; the kill cuts it."""

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError, OSError):
            httpx.request(method, url, content=body, headers=headers, timeout=30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _resume(client: httpx.Client, location: str, data: bytes) -> str:
    """Continue an upload as the spec says: ask where it stands, send the rest, close it.
    Returns "resumed" or "gone"; fails on anything else (a 416 in particular)."""
    status = client.get(location)
    if status.status_code == 404:
        return "gone"
    assert status.status_code == 204, status.text
    offset = int(status.headers["range"].split("-")[1]) + 1
    if offset == 1 and status.headers["range"] == "0-0":
        offset = 0
    rest = data[offset:]
    patch = client.patch(
        location,
        content=rest,
        headers={
            "Content-Range": f"{offset}-{len(data) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert patch.status_code == 202, (offset, patch.status_code, patch.text)
    put = client.put(f"{patch.headers['location']}?digest={_digest(data)}")
    assert put.status_code == 201, (put.status_code, put.text)
    return "resumed"


def test_uploads_cut_by_sigkill_resume_at_once_after_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = RegistryServer(
        "moorage", tmp_path_factory.mktemp("resume-after-crash"), extra_args=["--workers", "2"]
    )
    with server:
        for round_ in range(3):
            chunked, streamed, whole = (os.urandom(SIZE) for _ in range(3))
            repo = f"resume/r{round_}"
            bodies = [StalledBody(chunked[CHUNK * 2 :]), StalledBody(streamed), StalledBody(whole)]
            with server.client() as client:
                # Chunked: two chunks recorded, the third in flight.
                chunked_at = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
                for first in (0, CHUNK):
                    client.patch(
                        chunked_at,
                        content=chunked[first : first + CHUNK],
                        headers={"Content-Range": f"{first}-{first + CHUNK - 1}"},
                    ).raise_for_status()
                # Streamed: one PATCH with the whole blob, in flight.
                streamed_at = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
            senders = [
                _in_flight(
                    "PATCH",
                    server.url + chunked_at,
                    bodies[0],
                    {"Content-Range": f"{CHUNK * 2}-{SIZE - 1}"},
                ),
                _in_flight("PATCH", server.url + streamed_at, bodies[1]),
                _in_flight(
                    "POST",
                    f"{server.url}/v2/{repo}/blobs/uploads/?digest={_digest(whole)}",
                    bodies[2],
                ),
            ]
            for body in bodies:
                assert body.sent.wait(20), "a request never got under way"
            time.sleep(0.3)  # the server has read what was sent
            server.restart(kill=True)
            for body in bodies:
                body.release.set()
            for sender in senders:
                sender.join(30)

            started = time.monotonic()
            with server.client() as client:
                outcomes = [
                    _resume(client, chunked_at, chunked),
                    _resume(client, streamed_at, streamed),
                ]
                # The monolithic upload had no session: the client sends it again.
                again = client.post(
                    f"/v2/{repo}/blobs/uploads/?digest={_digest(whole)}", content=whole
                )
                assert again.status_code == 201, again.text
                for data in (chunked, streamed, whole):
                    pulled = client.get(f"/v2/{repo}/blobs/{_digest(data)}")
                    if data is not streamed or outcomes[1] == "resumed":
                        assert pulled.status_code == 200 and pulled.content == data
            assert outcomes == ["resumed", "resumed"], outcomes
            assert time.monotonic() - started < 20, "resuming waited for the dead lease"
