"""An upload session held by a node on another host that died is continued at once, on S3,
and the dead node's bytes, should it still run, never become the upload's; on a store that
appends in place (the filesystem) such a holder is not displaced early."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.sql import SqlMetadataStore
from moorage.oci.digest import Digest
from moorage.oci.ranges import ByteRange
from moorage.services.liveness import Liveness
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from moorage.storage.port import BlobStore
from moorage.storage.s3 import S3BlobStore
from tests.support_s3 import MotoServer

REPO = "takeover/repo"
DATA = os.urandom(300_000)


class Elsewhere(Liveness):
    """Every other holder runs on another host; ``dead`` ones are presumed dead."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "host-a-boot:pid:[1]/10/100/node-a"
        self.dead: set[str] = set()
        self.timeout = 0.5

    def current(self) -> str:
        return self.name

    def is_dead(self, holder: str | None) -> bool:
        return holder in self.dead

    def is_dead_here(self, holder: str | None) -> bool:
        return False

    def may_be_judged(self, holder: str | None) -> bool:
        return True


def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def code_of(error: pytest.ExceptionInfo[RegistryError]) -> ErrorCode:
    return error.value.code


def test_a_dead_nodes_session_continues_elsewhere_and_its_late_bytes_are_ignored(
    store: SqlMetadataStore, moto: MotoServer
) -> None:
    blobs = S3BlobStore.from_settings(moto.settings())
    liveness = Elsewhere()
    uploads = UploadService(store, blobs, 3600.0, liveness=liveness)
    session = uploads.start(REPO)
    first = uploads.begin_append(REPO, session.id, ByteRange(0, 99_999))
    first.write(DATA[:100_000])
    assert first.finish().offset == 100_000

    # Node A appends the next chunk and is cut off from the database mid-request.
    node_a = uploads.begin_append(REPO, session.id, None)
    node_a.write(b"bytes of the node presumed dead " * 1000)
    liveness.dead.add(liveness.name)
    liveness.name = "host-b-boot:pid:[1]/20/200/node-b"

    # Node B is asked where to go on, continues at once and completes the blob.
    assert uploads.status(REPO, session.id).offset == 100_000
    asked = time.monotonic()
    resumed = uploads.begin_append(REPO, session.id, ByteRange(100_000, 199_999))
    assert time.monotonic() - asked < 0.5
    resumed.write(DATA[100_000:200_000])
    assert resumed.finish().offset == 200_000

    # Node A was only cut off: its segment completes now, and its record is fenced off.
    with pytest.raises(RegistryError) as refused:
        node_a.finish()
    assert code_of(refused) is ErrorCode.BLOB_UPLOAD_INVALID

    closing = uploads.begin_append(REPO, session.id, ByteRange(200_000, len(DATA) - 1))
    closing.write(DATA[200_000:])
    closing.complete(digest(DATA))
    linked = store.linked_blob(REPO, str(digest(DATA)))
    assert linked is not None and linked.size == len(DATA)
    assert b"".join(blobs.read(digest(DATA), location=linked.location)) == DATA


def test_a_live_holder_elsewhere_is_waited_for_one_timeout_then_refused(
    store: SqlMetadataStore, moto: MotoServer
) -> None:
    blobs = S3BlobStore.from_settings(moto.settings())
    liveness = Elsewhere()
    uploads = UploadService(store, blobs, 3600.0, liveness=liveness)
    session = uploads.start(REPO)
    holding = uploads.begin_append(REPO, session.id, None)
    holding.write(DATA[:10])
    liveness.name = "host-b-boot:pid:[1]/20/200/node-b"
    asked = time.monotonic()
    with pytest.raises(RegistryError) as busy:
        uploads.begin_append(REPO, session.id, ByteRange(0, 9))
    waited = time.monotonic() - asked
    assert code_of(busy) is ErrorCode.TOOMANYREQUESTS
    assert liveness.timeout <= waited < liveness.timeout + 5
    assert holding.finish().offset == 10


def test_on_the_filesystem_a_holder_elsewhere_is_never_displaced_early(
    store: SqlMetadataStore, tmp_path: Path
) -> None:
    blobs: BlobStore = FilesystemBlobStore(tmp_path / "data")
    liveness = Elsewhere()
    uploads = UploadService(store, blobs, 3600.0, liveness=liveness)
    session = uploads.start(REPO)
    holding = uploads.begin_append(REPO, session.id, None)
    holding.write(DATA[:10])
    liveness.dead.add(liveness.name)  # presumed dead, but it might append to the same file
    liveness.name = "host-b-boot:pid:[1]/20/200/node-b"
    asked = time.monotonic()
    with pytest.raises(RegistryError) as busy:
        uploads.begin_append(REPO, session.id, ByteRange(0, 9))
    assert code_of(busy) is ErrorCode.TOOMANYREQUESTS
    assert time.monotonic() - asked < 0.5  # no wait either: waiting could not help
    assert holding.finish().offset == 10
