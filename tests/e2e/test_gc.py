"""``moorage gc`` against a running ``moorage serve``, on the filesystem and on S3 (moto):
images pushed and deleted with skopeo, the bytes of the deleted ones gone from disk or bucket,
the live ones still pulling byte for byte. Also the server's own periodic collector."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from moorage.oci.digest import Digest
from moorage.services.lease_holders import LeaseHolder
from moorage.storage.filesystem import FilesystemBlobStore
from moorage.storage.port import BlobStore
from moorage.storage.s3 import S3BlobStore
from tests.support_s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

from .support import (
    BuiltImage,
    OciLayout,
    RegistryServer,
    Tool,
    describe_run,
    image_files,
    moorage_executable,
    push_layout,
)

pytestmark = pytest.mark.e2e

SHARED_BASE = {"base/os-release": b"shared base layer\n" * 64}


@dataclass
class Backend:
    name: str
    server: RegistryServer
    store: BlobStore

    def stored(self) -> set[str]:
        return {str(digest) for digest, _ in self.store.iter_blobs()}

    def gc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``moorage gc`` with the server's data directory and environment."""
        argv = [moorage_executable(), "gc", "--data-dir", str(self.server.data_dir), *args]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.server.env},
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(describe_run(result), pytrace=False)
        return result

    def gc_json(self, *args: str) -> Any:
        return json.loads(self.gc("--json", *args).stdout)


def s3_env(moto: MotoServer, prefix: str) -> dict[str, str]:
    return {
        "SETTINGS_FLAVOR": "s3",
        "AWS_BUCKET": moto.bucket,
        "STORAGE_PATH": f"/{prefix}",
        "AWS_REGION": REGION,
        "AWS_KEY": ACCESS_KEY,
        "AWS_SECRET": SECRET_KEY,
        "AWS_ENDPOINT_URL": moto.endpoint,
    }


@pytest.fixture(params=["filesystem", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    # The server's own collector stays off here: `moorage gc` does the work.
    env = {"MOORAGE_GC__INTERVAL": "0"}
    store: BlobStore
    if request.param == "s3":
        moto: MotoServer = request.getfixturevalue("moto")
        prefix = f"gc-{uuid.uuid4().hex[:8]}"
        env |= s3_env(moto, prefix)
        store = S3BlobStore.from_settings(moto.settings(prefix=prefix))
    else:
        store = FilesystemBlobStore(tmp_path / "server" / "data")
    with RegistryServer("moorage", tmp_path / "server", env=env) as server:
        yield Backend(request.param, server, store)


def _push(skopeo: Tool, layout: OciLayout, image: BuiltImage, tag: str, dest: str) -> None:
    layout.tag(image.manifest, tag)
    push_layout(skopeo, layout, tag, dest, layout.path.parent)


def test_gc_reclaims_deleted_images_and_keeps_live_ones(backend: Backend, tmp_path: Path) -> None:
    server = backend.server
    skopeo = Tool("skopeo", registry=server)
    layout = OciLayout(tmp_path / "source")
    doomed = layout.add_image(image_files("doomed"), base_files=SHARED_BASE)
    live = layout.add_image(image_files("live"), base_files=SHARED_BASE)
    _push(skopeo, layout, doomed, "doomed", f"docker://{server.host}/gc/app:old")
    _push(skopeo, layout, live, "live", f"docker://{server.host}/gc/app:new")
    assert doomed.blob_digests | live.blob_digests <= backend.stored()

    skopeo("delete", "--tls-verify=false", f"docker://{server.host}/gc/app:old")
    only_doomed = doomed.blob_digests - live.blob_digests
    assert len(only_doomed) == 2  # its config and its own layer; the base is shared

    dry = backend.gc_json("--dry-run", "--grace", "0s")
    assert dry["dry_run"] is True
    assert {i["digest"] for i in dry["items"] if i["kind"] == "blob"} == only_doomed
    assert only_doomed <= backend.stored()  # a dry run changes nothing

    report = backend.gc_json("--grace", "0s")
    assert report["totals"]["blob"]["count"] == 2
    assert report["orphans_seen"] == 0  # every stored object, in place or not, is known
    assert report["totals"]["blob"]["bytes"] == sum(len(layout.read_blob(d)) for d in only_doomed)
    stored = backend.stored()
    assert not only_doomed & stored
    assert live.blob_digests <= stored

    # The live image pulls, byte for byte.
    copy = OciLayout(tmp_path / "pulled")
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{server.host}/gc/app:new",
        copy.reference("new"),
    )
    assert copy.corrupt_blobs() == []
    for digest in live.blob_digests:
        assert copy.read_blob(digest) == layout.read_blob(digest)

    # Nothing left to do, and the text report says so.
    again = backend.gc("--grace", "0s")
    assert "blobs" in again.stdout and "collected 0 B" in again.stdout


def test_gc_reclaims_orphaned_objects_after_the_grace(backend: Backend) -> None:
    data = b"bytes no row knows: a crash between the store and the database"
    digest = Digest.of_bytes(data, "sha256")
    writer = backend.store.open_blob(digest)
    if writer is None:  # the filesystem stages and renames
        path = FilesystemBlobStore(backend.server.data_dir)._blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        writer.write(data)
        writer.close()
    assert str(digest) in backend.stored()
    first = backend.gc_json("--grace", "1h")
    assert first["orphans_seen"] == 1 and str(digest) in backend.stored()
    second = backend.gc_json("--grace", "0s")
    assert second["totals"]["orphan"] == {"count": 1, "bytes": len(data)}
    assert str(digest) not in backend.stored()


def test_gc_refuses_to_run_beside_another_collector_and_says_why(backend: Backend) -> None:
    from moorage.app import build_registry
    from moorage.config import load_settings
    from moorage.metadata.job_leases import SqlJobLeases
    from moorage.metadata.sql import SqlMetadataStore

    os.environ.update(backend.server.env)
    try:
        settings = load_settings(storage={"data_dir": backend.server.data_dir})
        metadata = build_registry(settings).metadata
        assert isinstance(metadata, SqlMetadataStore)
        now = time.time()
        assert SqlJobLeases(metadata).acquire("gc", "node-7:1234:abcd", now, now + 60)
    finally:
        for key in backend.server.env:
            os.environ.pop(key, None)
    result = backend.gc(check=False)
    assert result.returncode != 0
    assert "another garbage collection is running (node-7:1234:abcd)" in result.stderr


def test_the_server_collects_by_itself_on_two_workers(tmp_path: Path) -> None:
    env = {"MOORAGE_GC__INTERVAL": "1s", "MOORAGE_GC__GRACE": "0s"}
    with RegistryServer(
        "moorage", tmp_path / "server", extra_args=["--workers", "2"], env=env
    ) as server:
        skopeo = Tool("skopeo", registry=server)
        layout = OciLayout(tmp_path / "source")
        image = layout.add_image(image_files("periodic"))
        _push(skopeo, layout, image, "v1", f"docker://{server.host}/gc/periodic:v1")
        store = FilesystemBlobStore(server.data_dir)
        skopeo("delete", "--tls-verify=false", f"docker://{server.host}/gc/periodic:v1")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not {str(d) for d, _ in store.iter_blobs()} & image.blob_digests:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the server did not collect within 20 s\n{server.log_tail()}")


def test_the_server_collects_in_a_process_of_its_own(tmp_path: Path) -> None:
    """In a worker's thread the collector shared the worker's GIL and, with the worker busy,
    held the writer lock many times its 2 ms batches while it waited for the GIL (docs/gc.md);
    each of the server's collections runs in a child process instead, as `moorage gc` does."""
    env = {"MOORAGE_GC__INTERVAL": "1s", "MOORAGE_GC__GRACE": "0s"}
    with RegistryServer(
        "moorage", tmp_path / "server", extra_args=["--workers", "2"], env=env
    ) as server:
        assert server.pid is not None
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        workers = {server.pid, *map(int, children)}
        database = server.data_dir / "moorage.db"
        deadline = time.monotonic() + 30
        holder = None
        while holder is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                row = conn.execute(
                    "SELECT holder FROM job_leases WHERE name = 'gc.full'"
                ).fetchone()
            holder = None if row is None else row[0]
        assert holder is not None, f"no collection within 30 s\n{server.log_tail()}"
        collector = LeaseHolder.parse(holder.partition("#")[0])
        assert collector is not None and collector.pid not in workers, (holder, workers)
        assert "garbage collection failed" not in server.log_tail()


def test_a_collector_killed_midway_loses_nothing_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    env = {"MOORAGE_GC__INTERVAL": "0"}
    with RegistryServer("moorage", tmp_path / "server", env=env) as server:
        backend = Backend("filesystem", server, FilesystemBlobStore(server.data_dir))
        skopeo = Tool("skopeo", registry=server)
        layout = OciLayout(tmp_path / "source")
        live = layout.add_image(image_files("survivor"))
        _push(skopeo, layout, live, "v1", f"docker://{server.host}/gc/live:v1")
        with server.client() as http:  # abandoned pushes: blobs no manifest will ever use
            for n in range(300):
                data = b"garbage %d\n" % n * 50
                digest = Digest.of_bytes(data, "sha256")
                done = http.post(f"/v2/gc/junk/blobs/uploads/?digest={digest}", content=data)
                assert done.status_code == 201
        garbage = len(backend.stored()) - len(live.blob_digests)
        assert garbage == 300

        argv = [moorage_executable(), "gc", "--data-dir", str(server.data_dir), "--grace", "0s"]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Killed as soon as the first bytes are gone: in the middle of deleting blobs.
        while process.poll() is None and len(backend.stored()) > 300 + len(live.blob_digests) - 1:
            time.sleep(0.002)
        process.kill()
        process.wait()
        assert process.returncode == -9, "the collection ended before it could be killed"
        left = len(backend.stored()) - len(live.blob_digests)
        assert 0 < left < 300

        backend.gc("--grace", "0s")
        assert backend.stored() == live.blob_digests
        copy = OciLayout(tmp_path / "pulled")
        skopeo(
            "copy",
            "--src-tls-verify=false",
            f"docker://{server.host}/gc/live:v1",
            copy.reference("v1"),
        )
        for blob in live.blob_digests:
            assert copy.read_blob(blob) == layout.read_blob(blob)
