"""The collector against a registry in use: several clients push (skipping layers a HEAD says
exist, mounting from other repositories, pushing again the layers of images just deleted),
delete and move tags, on 2 workers, while `moorage gc` with a short grace runs over and over
(some runs SIGKILLed midway) and the server's own collector runs too. Then a final collection:
every acknowledged live image pulls byte for byte, no manifest was refused for a blob the
registry had just said it has, and the store holds exactly the live blobs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from moorage.storage.filesystem import FilesystemBlobStore

from .support import (
    MT_OCI_CONFIG,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    OciLayout,
    RegistryServer,
    Tool,
    moorage_executable,
)

pytestmark = pytest.mark.e2e

GRACE = "4s"
DURATION = 12.0  # seconds of clients at least
DEADLINE = 90.0  # ... and at most
CLIENTS = 4
REPOS = ("race/a", "race/b", "race/c")
POOL = [hashlib.sha512(b"pool %d" % i).digest() * 512 for i in range(10)]  # 32 KiB each


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def new_image(rng: random.Random) -> Image:
    layers = [*rng.sample(POOL, 2), rng.randbytes(4096)]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "id": rng.getrandbits(64)}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": MT_OCI_LAYER_GZIP, "digest": sha256(layer), "size": len(layer)}
                for layer in layers
            ],
        }
    ).encode()
    return Image(manifest, {sha256(data): data for data in (config, *layers)})


@dataclass
class Findings:
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused: list[str] = field(default_factory=list)  # manifests refused after a 200/201
    errors: list[str] = field(default_factory=list)  # anything else unexpected
    gc_retries: int = 0  # uploads that met the collector deleting their blob, pushed again
    operations: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        with self.lock:
            self.operations[what] = self.operations.get(what, 0) + 1


class Client:
    """One client with its own tags: its view of what is live is exact (it alone changes it)."""

    def __init__(self, index: int, server: RegistryServer, findings: Findings) -> None:
        self.rng = random.Random(index)
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.tags = [f"c{index}-{k}" for k in range(3)]
        self.findings = findings
        self.live: dict[tuple[str, str], Image] = {}
        self.deleted: list[tuple[str, Image]] = []

    def upload(self, repo: str, digest: str, data: bytes) -> None:
        for _attempt in range(3):
            if self.rng.random() < 0.5:
                response = self.http.post(
                    f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data
                )
            else:
                start = self.http.post(f"/v2/{repo}/blobs/uploads/")
                assert start.status_code == 202, start.text
                response = self.http.put(
                    start.headers["location"], params={"digest": digest}, content=data
                )
            if response.status_code == 201:
                return
            if "removed by garbage collection" in response.text:
                with self.findings.lock:
                    self.findings.gc_retries += 1
                continue
            break
        with self.findings.lock:
            self.findings.errors.append(
                f"upload {repo} {digest}: {response.status_code} {response.text}"
            )

    def put_manifest(self, repo: str, image: Image, told: set[str], what: str) -> None:
        tag = self.rng.choice(self.tags)
        response = self.http.put(
            f"/v2/{repo}/manifests/{tag}",
            content=image.manifest,
            headers={"Content-Type": MT_OCI_MANIFEST},
        )
        if response.status_code == 201:
            self.live[(repo, image.digest)] = image
            self.findings.count(what)
            return
        with self.findings.lock:
            target = self.findings.refused if told else self.findings.errors
            target.append(f"{what} {repo}:{tag}: {response.status_code} {response.text}")

    def push(self, repo: str, image: Image, what: str = "push") -> None:
        told: set[str] = set()
        for digest, data in image.blobs.items():
            head = self.http.head(f"/v2/{repo}/blobs/{digest}")
            if head.status_code == 200:
                told.add(digest)  # skipped, as clients do: it must still be there at the PUT
            else:
                self.upload(repo, digest, data)
        self.put_manifest(repo, image, told, what)

    def mount(self, source: str, image: Image, target: str) -> None:
        told: set[str] = set()
        for digest, data in image.blobs.items():
            response = self.http.post(
                f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source}
            )
            if response.status_code == 201:
                told.add(digest)
                continue
            assert response.status_code == 202, response.text
            put = self.http.put(
                response.headers["location"], params={"digest": digest}, content=data
            )
            if put.status_code != 201:
                with self.findings.lock:
                    self.findings.errors.append(f"mount upload {digest}: {put.text}")
        self.put_manifest(target, image, told, "mount")

    def delete(self) -> None:
        repo, digest = self.rng.choice(sorted(self.live))
        response = self.http.delete(f"/v2/{repo}/manifests/{digest}")
        if response.status_code != 202:
            with self.findings.lock:
                self.findings.errors.append(f"delete {repo}@{digest}: {response.text}")
            return
        self.deleted.append((repo, self.live.pop((repo, digest))))
        self.findings.count("delete")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            roll = self.rng.random()
            if roll < 0.35 or not self.live:
                self.push(self.rng.choice(REPOS), new_image(self.rng))
            elif roll < 0.5 and self.deleted:
                repo, image = self.deleted.pop()  # its layers again, right after its delete
                self.push(repo, image, "re-push")
            elif roll < 0.65:
                (source, _), image = self.rng.choice(sorted(self.live.items()))
                self.mount(source, image, self.rng.choice([r for r in REPOS if r != source]))
            elif roll < 0.8:
                (repo, _), image = self.rng.choice(sorted(self.live.items()))
                self.put_manifest(repo, image, set(image.blobs), "tag move")
            else:
                self.delete()


def run_gc(server: RegistryServer, *args: str, kill_after: float | None = None) -> tuple[str, str]:
    """Run `moorage gc`; its outcome ("ok", "busy": another collector ran, or "killed") and
    its output."""
    argv = [moorage_executable(), "gc", "--data-dir", str(server.data_dir), *args]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **server.env},
    )
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return "killed", ""
    out, err = process.communicate(timeout=120)
    if process.returncode == 0:
        return "ok", out
    if "another garbage collection is running" in err:
        return "busy", out
    raise AssertionError(f"moorage gc failed ({process.returncode}):\n{out}\n{err}")


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryServer]:
    env = {
        "MOORAGE_GC__GRACE": GRACE,
        "MOORAGE_GC__INTERVAL": "3s",  # the server's collector runs too, under the same lease
        "MOORAGE_GC__FULL_INTERVAL": "5s",
    }
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(request.getfixturevalue("postgres").fresh_database())
            env["MOORAGE_DATABASE__URL"] = url
        server = RegistryServer(
            "moorage", tmp_path / "server", extra_args=["--workers", "2"], env=env
        )
        yield stack.enter_context(server)


def test_collecting_while_clients_push_delete_and_mount(
    server: RegistryServer, tmp_path: Path
) -> None:
    findings = Findings()
    stop = threading.Event()
    clients = [Client(i, server, findings) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in clients]
    for thread in threads:
        thread.start()
    outcomes: dict[str, int] = {}
    rng = random.Random(99)
    runs = 0
    collected = 0  # blobs `moorage gc` reclaimed while the clients ran
    started = time.monotonic()
    try:
        while True:
            runs += 1
            args = ["--json", "--grace", GRACE] + ([] if runs % 3 == 0 else ["--quick"])
            kill = rng.uniform(0.5, 2.0) if runs % 3 == 2 else None
            outcome, out = run_gc(server, *args, kill_after=kill)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if out:
                collected += json.loads(out)["totals"]["blob"]["count"]
            # Long enough, and the collector really raced the clients: it ran to the end a few
            # times, collected something, and was killed at least once. (A loaded machine
            # makes each `moorage gc` slower, so this counts runs, not seconds.)
            raced = outcomes.get("ok", 0) >= 3 and outcomes.get("killed", 0) >= 1 and collected
            elapsed = time.monotonic() - started
            if (raced and elapsed >= DURATION) or elapsed >= DEADLINE:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert findings.refused == [], "manifests refused for blobs the registry said it had"
    assert findings.errors == []
    assert raced, (outcomes, collected)

    # The final collection: everything unreferenced goes (orphans need two sightings).
    env_grace = ["--grace", "0s"]
    for _ in range(2):
        while run_gc(server, *env_grace)[0] != "ok":
            time.sleep(0.5)

    live = {key: image for client in clients for key, image in client.live.items()}
    live_blobs = {digest: data for image in live.values() for digest, data in image.blobs.items()}
    with server.client() as http:
        for (repo, digest), image in live.items():
            got = http.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": MT_OCI_MANIFEST})
            assert got.status_code == 200 and got.content == image.manifest, (repo, digest)
            for blob, data in image.blobs.items():
                fetched = http.get(f"/v2/{repo}/blobs/{blob}", follow_redirects=True)
                assert fetched.status_code == 200 and fetched.content == data, (repo, blob)

    # A few of them through a real client as well.
    skopeo = Tool("skopeo", registry=server)
    for n, (repo, digest) in enumerate(sorted(live)[:3]):
        layout = OciLayout(tmp_path / f"pulled-{n}")
        skopeo(
            "copy",
            "--src-tls-verify=false",
            f"docker://{server.host}/{repo}@{digest}",
            layout.reference("x"),
        )
        assert layout.corrupt_blobs() == []

    # The store holds the live blobs and nothing else.
    store = FilesystemBlobStore(server.data_dir)
    on_disk = {str(d) for d, _ in store.iter_blobs()}
    assert on_disk == set(live_blobs)
    disk_bytes = sum(
        p.stat().st_size for p in (server.data_dir / "blobs").rglob("*") if p.is_file()
    )
    upload_bytes = sum(
        p.stat().st_size for p in (server.data_dir / "uploads").rglob("*") if p.is_file()
    )
    live_bytes = sum(len(data) for data in live_blobs.values())
    assert disk_bytes == live_bytes
    assert upload_bytes < 2 * 1024 * 1024
    print(
        f"\nrace: {findings.operations} gc runs {outcomes}, gc upload retries "
        f"{findings.gc_retries}, blobs collected meanwhile {collected}, "
        f"live images {len(live)}, live bytes {live_bytes}, "
        f"upload leftovers {upload_bytes}"
    )
