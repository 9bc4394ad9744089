"""Crash safety (SIGKILL during concurrent pushes) and flat server memory while streaming."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import RegistryServer, registry_kind

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1024 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_image(
    client: httpx.Client, repo: str, seed: int, layer_size: int
) -> tuple[str, dict[str, bytes]]:
    """Push config + layer (chunked PATCHes) + manifest; return manifest digest and blobs."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    layer = (block * (layer_size // len(block) + 1))[:layer_size]
    blobs = {_digest(config): config, _digest(layer): layer}
    r = client.post(f"/v2/{repo}/blobs/uploads/?digest={_digest(config)}", content=config)
    r.raise_for_status()
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    location = r.headers["location"]
    for first in range(0, len(layer), MiB):
        chunk = layer[first : first + MiB]
        r = client.patch(
            location, content=chunk, headers={"Content-Range": f"{first}-{first + len(chunk) - 1}"}
        )
        r.raise_for_status()
    client.put(f"{location}?digest={_digest(layer)}").raise_for_status()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/v{seed}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    r.raise_for_status()
    return _digest(manifest), blobs


def _assert_image_pullable(
    client: httpx.Client, repo: str, seed: int, digest: str, blobs: dict[str, bytes]
) -> None:
    manifest = client.get(f"/v2/{repo}/manifests/v{seed}", headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 200, (repo, seed, manifest.text)
    assert _digest(manifest.content) == digest
    for blob_digest, data in blobs.items():
        got = client.get(f"/v2/{repo}/blobs/{blob_digest}")
        assert got.status_code == 200
        assert got.content == data


def _assert_everything_served_is_whole(client: httpx.Client, data_dir: Path) -> int:
    """Every blob file on disk hashes to its name, and every tagged manifest's blobs exist."""
    checked = 0
    for path in (data_dir / "blobs" / "sha256").glob("*/*"):
        hasher = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(MiB):
                hasher.update(chunk)
        assert hasher.hexdigest() == path.name, f"partial or corrupt blob published: {path}"
        checked += 1
    for repo in client.get("/v2/_catalog").json()["repositories"]:
        for tag in client.get(f"/v2/{repo}/tags/list").json()["tags"]:
            manifest = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert manifest.status_code == 200
            for layer in json.loads(manifest.content)["layers"]:
                head = client.head(f"/v2/{repo}/blobs/{layer['digest']}")
                assert head.status_code == 200
                assert head.headers["content-length"] == str(layer["size"])
    return checked


def test_sigkill_during_concurrent_pushes_loses_nothing_earlier(
    restartable_registry: RegistryServer,
) -> None:
    server = restartable_registry
    earlier: list[tuple[str, int, str, dict[str, bytes]]] = []
    with server.client() as client:
        for seed in range(4):
            repo = f"crash/before{seed % 2}"
            digest, blobs = _push_image(client, repo, seed, 3 * MiB)
            earlier.append((repo, seed, digest, blobs))

    stop = threading.Event()
    outcomes: list[str] = []

    def pusher(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            seed = 1000 * (worker + 1)
            while not stop.is_set():
                try:
                    _push_image(client, f"crash/during{worker}", seed, 6 * MiB)
                    outcomes.append("pushed")
                except (httpx.HTTPError, OSError):
                    outcomes.append("cut")
                    return
                seed += 1

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)  # let uploads be mid-flight
    server.restart(kill=True)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert "cut" in outcomes, "the kill should have interrupted at least one push"

    with server.client() as client:
        for repo, seed, digest, blobs in earlier:
            _assert_image_pullable(client, repo, seed, digest, blobs)
        assert _assert_everything_served_is_whole(client, server.data_dir) >= 4
        # The registry takes new pushes after the crash.
        digest, blobs = _push_image(client, "crash/after", 7, 2 * MiB)
        _assert_image_pullable(client, "crash/after", 7, digest, blobs)


def _tree_rss(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [root_pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            time.sleep(0.05)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


@pytest.fixture
def one_worker_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """One worker: the warm-up below must reach the very process that then streams, which
    with several workers (the default is one per CPU) nothing can choose."""
    with RegistryServer(registry_kind(), tmp_path, extra_args=["--workers", "1"]) as server:
        yield server


def test_two_gib_push_and_pull_keep_server_memory_flat(
    one_worker_registry: RegistryServer,
) -> None:
    server = one_worker_registry
    assert server.pid is not None
    size = 2 * 1024 * MiB
    block = os.urandom(MiB)

    def body() -> Iterator[bytes]:
        for i in range(size // MiB):
            yield block[i % 7 :] + block[: i % 7]

    expected = hashlib.sha256()
    for piece in body():
        expected.update(piece)
    digest = "sha256:" + expected.hexdigest()

    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        # Warm up every code path once so the baseline includes imports and caches.
        small = b"warm-up"
        client.post(
            f"/v2/mem/blob/blobs/uploads/?digest={_digest(small)}", content=small
        ).raise_for_status()
        client.get(f"/v2/mem/blob/blobs/{_digest(small)}").raise_for_status()
        baseline = _tree_rss(server.pid)

        sampler = _RssSampler(server.pid)
        sampler.start()
        location = client.post("/v2/mem/blob/blobs/uploads/").headers["location"]
        client.patch(location, content=body()).raise_for_status()  # one streamed PATCH
        client.put(f"{location}?digest={digest}").raise_for_status()
        pulled = hashlib.sha256()
        received = 0
        with client.stream("GET", f"/v2/mem/blob/blobs/{digest}") as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                pulled.update(chunk)
                received += len(chunk)
        peak = sampler.stop()

    assert received == size
    assert "sha256:" + pulled.hexdigest() == digest
    growth = peak - baseline
    print(
        f"server RSS: baseline {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB, growth {growth / MiB:.1f} MiB"
    )
    assert growth < 30 * MiB, f"server RSS grew by {growth / MiB:.1f} MiB while streaming 2 GiB"
