"""Several worker processes share one data directory: an upload moves freely between them."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from moorage.cpus import auto_workers
from tests.e2e.support import RegistryServer, registry_kind

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[RegistryServer]:
    if registry_kind() != "moorage":
        pytest.fail("this test is about moorage's --workers option; unset E2E_REGISTRY_CMD")
    server = RegistryServer("moorage", tmp_path, extra_args=["--workers", "2"])
    server.start()
    yield server
    server.stop()


def test_chunked_upload_across_workers(two_workers: RegistryServer) -> None:
    data = hashlib.sha512(b"seed").digest() * 4096  # 256 KiB
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    chunk = 16 * 1024
    # A new connection per request: the kernel spreads them over both workers' accept queues.
    location = httpx.post(f"{two_workers.url}/v2/multi/worker/blobs/uploads/").headers["location"]
    for first in range(0, len(data), chunk):
        with httpx.Client(base_url=two_workers.url) as client:
            response = client.patch(
                location,
                content=data[first : first + chunk],
                headers={"Content-Range": f"{first}-{first + chunk - 1}"},
            )
            assert response.status_code == 202, response.text
            assert response.headers["range"] == f"0-{first + chunk - 1}"
    done = httpx.put(f"{two_workers.url}{location}?digest={digest}")
    assert done.status_code == 201, done.text
    for _ in range(8):
        got = httpx.get(f"{two_workers.url}/v2/multi/worker/blobs/{digest}")
        assert got.content == data


def test_default_is_one_worker_per_cpu(tmp_path: Path) -> None:
    """`./scripts/serve` with no flags starts as many workers as the machine has CPUs (at most
    8)."""
    if registry_kind() != "moorage":
        pytest.fail("this test is about moorage's default workers; unset E2E_REGISTRY_CMD")
    expected = auto_workers()
    with RegistryServer("moorage", tmp_path) as server:
        deadline = time.monotonic() + 30  # the first worker may answer before the last starts
        while True:
            log = server.log_path.read_text()
            started = set(re.findall(r"Started worker-(\d+)", log))
            if len(started) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert f", {expected} worker(s))" in log
    assert len(started) == expected, log
