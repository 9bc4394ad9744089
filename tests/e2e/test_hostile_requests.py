"""Hostile requests against a real ``moorage serve`` (issue 9, item 4): an escaped slash in the
name, a body trickled over a raw socket, and oversized headers, as granian delivers them."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import RegistryServer, describe_response, sha256_digest

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT = 1.0
# A byte every this many seconds: a trickle the idle timeout must cut.
TRICKLE_PAUSE = 2.0
# Far more than the idle timeout: a connection still open after this is being read forever.
GIVE_UP = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Moorage itself (the settings are Moorage's), with a short body idle timeout."""
    env = {"MOORAGE_LIMITS__BODY_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT)}
    with RegistryServer("moorage", tmp_path_factory.mktemp("hostile"), env=env) as running:
        yield running


@pytest.fixture
def http(server: RegistryServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


def _parse(raw: bytes, elapsed: float) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body, elapsed)


def trickle(server: RegistryServer, head: bytes, first: bytes) -> RawResponse:
    """Send ``head`` and ``first``, then one more byte every ``TRICKLE_PAUSE`` seconds until
    the server answers and closes; fail if it is still reading after ``GIVE_UP`` seconds."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP) as sock:
        sock.sendall(head + first)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < GIVE_UP:
            readable, _, _ = select.select([sock], [], [], TRICKLE_PAUSE)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return _parse(received, elapsed)
                received += chunk
                continue
            try:
                sock.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
    if received:
        return _parse(received, time.monotonic() - started)
    pytest.fail(
        f"the server was still reading a trickled body after {GIVE_UP:.0f}s "
        f"(idle timeout {IDLE_TIMEOUT}s)\n{server.log_tail()}",
        pytrace=False,
    )


def _request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: registry",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_escaped_slash_in_the_name_is_refused(http: httpx.Client) -> None:
    response = http.post("/v2/team%2Fapp/blobs/uploads/")
    assert response.status_code == 400, describe_response(response)
    assert response.json()["errors"][0]["code"] == "NAME_INVALID"
    assert "location" not in response.headers


def test_a_trickled_patch_is_cut_and_the_session_kept(
    server: RegistryServer, http: httpx.Client
) -> None:
    location = http.post("/v2/slow/patch/blobs/uploads/").headers["location"]
    assert http.patch(location, content=b"0123456789").headers["range"] == "0-9"
    head = _request_head(
        "PATCH",
        location,
        {
            "Content-Range": "10-109",
            "Content-Length": "100",
            "Content-Type": "application/octet-stream",
        },
    )
    answer = trickle(server, head, b"a")
    assert answer.status == 408, answer
    assert answer.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert answer.elapsed < IDLE_TIMEOUT + TRICKLE_PAUSE + 5
    # The trickled bytes are gone; the session goes on from where it was, at once.
    status = http.get(location)
    assert (status.status_code, status.headers["range"]) == (204, "0-9"), describe_response(status)
    rest = http.patch(location, content=b"abcdef", headers={"Content-Range": "10-15"})
    assert rest.status_code == 202, describe_response(rest)
    done = http.put(f"{location}?digest={sha256_digest(b'0123456789abcdef')}")
    assert done.status_code == 201, describe_response(done)


def test_a_trickled_manifest_is_cut(server: RegistryServer, http: httpx.Client) -> None:
    head = _request_head(
        "PUT",
        "/v2/slow/manifest/manifests/v1",
        {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Content-Length": "400",
        },
    )
    answer = trickle(server, head, b'{"schemaVersion":')
    assert answer.status == 408, answer
    assert http.get("/v2/slow/manifest/manifests/v1").status_code == 404
    assert http.get("/v2/").status_code == 200  # and the server serves on


@pytest.mark.parametrize(("size", "status"), [(15_000, 200), (17_000, 431), (64 * 1024, 431)])
def test_headers_over_16_kib_get_431(http: httpx.Client, size: int, status: int) -> None:
    response = http.get("/v2/", headers={"X-Padding": "a" * size})
    assert response.status_code == status, describe_response(response, 300)
    if status == 431:
        assert response.json()["errors"][0]["code"] == "SIZE_INVALID"
    assert http.get("/v2/").status_code == 200


def test_the_header_limit_is_configurable(tmp_path: Path) -> None:
    env = {"MOORAGE_LIMITS__HEADER_MAX_BYTES": str(64 * 1024 + 1024)}
    with RegistryServer("moorage", tmp_path, env=env) as server, server.client() as client:
        response = client.get("/v2/", headers={"X-Padding": "a" * 64 * 1024})
        assert response.status_code == 200, describe_response(response, 300)
