"""Upload sessions under concurrency and crashes: the lease held from claim to completion,
fencing of expired holders, renewal, the sweeper, and durable progress."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.port import UploadBusy
from moorage.metadata.records import BlobRecord, UploadSession
from moorage.metadata.sql import SqlMetadataStore
from moorage.oci.digest import Digest
from moorage.oci.ranges import ByteRange
from moorage.services.lease_holders import LeaseHolders
from moorage.services.liveness import Liveness
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from tests.unit.manual_clock import ManualClock as Clock

DATA = os.urandom(5000)
REPO = "lease/repo"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def blobs(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "data")


@pytest.fixture
def make_service(
    store: SqlMetadataStore, blobs: FilesystemBlobStore, clock: Clock
) -> Callable[..., UploadService]:
    def make(**options: float) -> UploadService:
        options.setdefault("expiry_seconds", 3600.0)
        return UploadService(store, blobs, clock=clock, **options)  # type: ignore[arg-type]

    return make


def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def code_of(call: Callable[[], object]) -> tuple[ErrorCode, int]:
    with pytest.raises(RegistryError) as info:
        call()
    return info.value.code, info.value.status


def test_put_holds_the_session_until_the_blob_is_linked(
    make_service: Callable[..., UploadService], store: SqlMetadataStore
) -> None:
    uploads = make_service()
    session = uploads.start(REPO)
    put = uploads.begin_append(REPO, session.id, None)
    put.write(DATA)
    # A PATCH or PUT on the same session while the PUT verifies and publishes: told to retry
    # (429, with the recorded progress), never allowed to write or complete.
    for chunk in (ByteRange(0, 9), None):
        assert code_of(lambda c=chunk: uploads.begin_append(REPO, session.id, c)) == (  # type: ignore[misc]
            ErrorCode.TOOMANYREQUESTS,
            429,
        )
    put.complete(digest(DATA))
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))
    assert store.get_upload(REPO, session.id).ended  # type: ignore[union-attr]


def test_an_expired_holder_cannot_record_complete_or_discard(
    make_service: Callable[..., UploadService],
    store: SqlMetadataStore,
    blobs: FilesystemBlobStore,
    clock: Clock,
) -> None:
    uploads = make_service(renew_every=3600.0)
    session = uploads.start(REPO)
    stale = uploads.begin_append(REPO, session.id, None)
    clock.now += 120  # the first holder froze past its lease
    fresh = uploads.begin_append(REPO, session.id, None)
    fresh.write(DATA[:100])
    assert fresh.finish().offset == 100

    # The stale holder is fenced off: it may neither write, nor record, nor publish.
    assert code_of(lambda: stale.write(b"x"))[0] is ErrorCode.BLOB_UPLOAD_INVALID
    assert code_of(stale.finish)[0] is ErrorCode.BLOB_UPLOAD_INVALID
    assert code_of(lambda: stale.complete(digest(b"")))[0] is ErrorCode.BLOB_UPLOAD_INVALID
    assert store.get_upload(REPO, session.id).offset == 100  # type: ignore[union-attr]
    assert blobs.stat(digest(b"")) is None or store.linked_blob(REPO, str(digest(b""))) is None

    # The same fencing at the store: an old token changes nothing.
    token = clock.now + 60
    assert store.claim_upload(REPO, session.id, clock.now, token, "holder") is not None
    assert not store.extend_lease(session.id, token - 1, token + 60)
    assert not store.release_upload(session.id, token - 1, 0, b"", clock.now)
    assert not store.complete_upload(session.id, token - 1, REPO, str(digest(b"")), 0, None)
    assert not store.discard_upload(session.id, token - 1)
    assert store.extend_lease(session.id, token, token + 60)


def test_a_slow_request_keeps_its_lease_alive(
    store: SqlMetadataStore, blobs: FilesystemBlobStore
) -> None:
    uploads = UploadService(store, blobs, 3600.0, lease_seconds=0.6, renew_every=0.1)
    session = uploads.start(REPO)
    slow = uploads.begin_append(REPO, session.id, None)
    slow.write(DATA[:10])
    time.sleep(1.5)  # the client sends nothing for longer than the lease
    assert code_of(lambda: uploads.begin_append(REPO, session.id, None))[1] == 429
    slow.write(DATA[10:])
    slow.complete(digest(DATA))
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))


def test_the_sweeper_leaves_a_session_in_use_alone(
    make_service: Callable[..., UploadService], store: SqlMetadataStore, clock: Clock
) -> None:
    uploads = make_service(expiry_seconds=10.0, lease_seconds=3600.0, renew_every=3600.0)
    session = uploads.start(REPO)
    busy = uploads.begin_append(REPO, session.id, None)
    busy.write(DATA[:10])
    clock.now += 60
    assert uploads.expire() == 0
    assert busy.finish().offset == 10
    clock.now += 60
    assert uploads.expire() == 1


def test_a_session_cancelled_during_its_put_is_unknown_not_a_500(
    make_service: Callable[..., UploadService], store: SqlMetadataStore
) -> None:
    uploads = make_service()
    session = uploads.start(REPO)
    put = uploads.begin_append(REPO, session.id, None)
    put.write(DATA)
    uploads.cancel(REPO, session.id)
    assert code_of(lambda: put.complete(digest(DATA))) == (ErrorCode.BLOB_UPLOAD_UNKNOWN, 404)
    assert store.linked_blob(REPO, str(digest(DATA))) is None


def test_progress_is_recorded_only_after_the_bytes_are_on_disk(
    make_service: Callable[..., UploadService],
    store: SqlMetadataStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    record = store.release_upload

    def checked_release(*args: object) -> bool:
        assert synced, "offset recorded before the upload's bytes were synced"
        return record(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "release_upload", checked_release)
    uploads = make_service()
    session = uploads.start(REPO)
    patch = uploads.begin_append(REPO, session.id, ByteRange(0, 99))
    patch.write(DATA[:100])
    assert patch.finish().offset == 100


def test_a_patchs_progress_is_committed_durably(
    make_service: Callable[..., UploadService],
    store: SqlMetadataStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 202 of a PATCH says its bytes are kept: the record of them must not be a commit a
    power failure may undo (SQLite WAL with synchronous=NORMAL, PostgreSQL without
    synchronous_commit)."""
    writes: list[bool] = []
    real = store._write

    def recorded(durable: bool = True) -> object:
        writes.append(durable)
        return real(durable)

    monkeypatch.setattr(store, "_write", recorded)
    uploads = make_service()
    session = uploads.start(REPO)
    patch = uploads.begin_append(REPO, session.id, ByteRange(0, 99))
    patch.write(DATA[:100])
    writes.clear()
    patch.finish()
    assert writes == [True]


def test_a_put_with_no_body_on_truncated_bytes_never_publishes_zeros(
    make_service: Callable[..., UploadService],
    store: SqlMetadataStore,
    tmp_path: Path,
) -> None:
    uploads = make_service()
    session = uploads.start(REPO)
    patch = uploads.begin_append(REPO, session.id, None)
    patch.write(DATA)
    patch.finish()
    with (tmp_path / "data" / "uploads" / session.id).open("r+b") as f:
        f.truncate(1000)  # what a power failure can leave
    put = uploads.begin_append(REPO, session.id, None)
    assert code_of(lambda: put.complete(digest(DATA)))[0] is ErrorCode.BLOB_UPLOAD_INVALID
    assert store.linked_blob(REPO, str(digest(DATA))) is None
    assert not (tmp_path / "data" / "blobs" / "sha256" / digest(DATA).encoded[:2]).exists()


def test_a_put_retried_after_publishing_but_before_the_commit_succeeds(
    make_service: Callable[..., UploadService],
    store: SqlMetadataStore,
    blobs: FilesystemBlobStore,
) -> None:
    uploads = make_service()
    session = uploads.start(REPO)
    patch = uploads.begin_append(REPO, session.id, None)
    patch.write(DATA)
    patch.finish()
    blobs.commit_upload(session.id, digest(DATA), len(DATA))  # then the process died
    retry = uploads.begin_append(REPO, session.id, None)
    retry.complete(digest(DATA))
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))


def test_a_vanished_upload_is_not_linked_to_someone_elses_blob(
    make_service: Callable[..., UploadService],
    store: SqlMetadataStore,
    blobs: FilesystemBlobStore,
) -> None:
    uploads = make_service()
    uploads.put_whole("other/repo", digest(DATA), DATA)
    session = uploads.start(REPO)
    patch = uploads.begin_append(REPO, session.id, None)
    patch.write(b"not the data")
    patch.finish()
    blobs.abort_upload(session.id)
    put = uploads.begin_append(REPO, session.id, None)
    assert code_of(lambda: put.complete(digest(DATA)))[0] is ErrorCode.DIGEST_INVALID
    assert store.linked_blob(REPO, str(digest(DATA))) is None


class DeadHolders(LeaseHolders):
    """Holders as the kernel would report them, with ``dead`` named processes killed."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "scope/1/1/node"
        self.dead: set[str] = set()

    def current(self) -> str:
        return self.name

    def is_local(self, name: str) -> bool:
        return True

    def is_dead(self, name: str | None) -> bool:
        return name in self.dead


def test_a_session_whose_holder_died_is_taken_over_at_once(
    store: SqlMetadataStore, blobs: FilesystemBlobStore, clock: Clock
) -> None:
    holders = DeadHolders()
    uploads = UploadService(store, blobs, 3600.0, clock=clock, liveness=Liveness(holders))
    session = uploads.start(REPO)
    first = uploads.begin_append(REPO, session.id, ByteRange(0, 99))
    first.write(DATA[:100])
    assert first.finish().offset == 100
    # A PATCH in flight when its worker is SIGKILLed: bytes written, nothing recorded, lease
    # held by a process that no longer runs, with most of its deadline left.
    killed = uploads.begin_append(REPO, session.id, None)
    killed.write(DATA[100:150])
    holders.dead.add(holders.name)
    holders.name = "scope/2/1/node"  # the restarted server

    # The client asks where to go on, and the chunk from there is accepted at once (no 416,
    # no 429), the killed request's partial bytes cut away.
    assert uploads.status(REPO, session.id).offset == 100
    resumed = uploads.begin_append(REPO, session.id, ByteRange(100, len(DATA) - 1))
    resumed.write(DATA[100:])
    resumed.complete(digest(DATA))
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))
    assert b"".join(blobs.read(digest(DATA))) == DATA
    # The dead holder, were it only frozen, is fenced off.
    assert code_of(killed.finish)[0] is ErrorCode.BLOB_UPLOAD_UNKNOWN


def test_a_live_holder_is_never_displaced(
    store: SqlMetadataStore, blobs: FilesystemBlobStore, clock: Clock
) -> None:
    holders = DeadHolders()
    uploads = UploadService(store, blobs, 3600.0, clock=clock, liveness=Liveness(holders))
    session = uploads.start(REPO)
    writing = uploads.begin_append(REPO, session.id, None)
    writing.write(DATA[:10])
    holders.dead.add("scope/9/9/node")  # some other process died; not this session's holder
    assert code_of(lambda: uploads.begin_append(REPO, session.id, ByteRange(0, 9))) == (
        ErrorCode.TOOMANYREQUESTS,
        429,
    )
    assert writing.finish().offset == 10


def test_a_takeover_replaces_exactly_the_dead_lease(store: SqlMetadataStore) -> None:
    session = UploadSession("e" * 32, REPO, "sha256", 0, b"", 0.0, 0.0)
    store.create_upload(session)
    assert store.claim_upload(REPO, session.id, 1.0, 100.0, "dead") is not None
    with pytest.raises(UploadBusy) as busy:
        store.claim_upload(REPO, session.id, 2.0, 102.0, "me")
    assert (busy.value.offset, busy.value.token, busy.value.holder) == (0, 100.0, "dead")
    # Two processes taking the same dead lease over: only the first wins.
    assert store.claim_upload(REPO, session.id, 2.0, 102.0, "me", replacing=100.0) is not None
    with pytest.raises(UploadBusy):
        store.claim_upload(REPO, session.id, 2.0, 103.0, "other", replacing=100.0)
    assert not store.extend_lease(session.id, 100.0, 200.0)  # the dead token is fenced off
