"""The docker/podman push of a small blob (POST, PATCH with the bytes, PUT ?digest=) in one
write transaction on the filesystem: a fresh session's first PATCH stores its bytes in the
session's file and nothing else, the closing PUT copies them into the blob, links it and ends
the session in one. (A store that keeps appends apart, S3, creates the row with the first
PATCH: two.) What a client may rely on stays: a 202 or 201 survives a crash, and a request
racing another on the same session is answered 416 or 429, never left with a corrupt upload."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import rehashes
from sqlalchemy import Connection, event

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.migrate import upgrade
from moorage.metadata.records import BlobRecord
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.oci.digest import Digest
from moorage.oci.ranges import ByteRange
from moorage.services import sha_libcrypto
from moorage.services import uploads as uploads_module
from moorage.services.upload_ids import UploadIds
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from tests.unit.manual_clock import ManualClock as Clock

DATA = os.urandom(4096)
OTHER = os.urandom(4096)
REPO = "fast/repo"
KEY = b"k" * 32


@pytest.fixture
def blobs(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "data")


@pytest.fixture
def uploads(store: SqlMetadataStore, blobs: FilesystemBlobStore) -> UploadService:
    return UploadService(store, blobs, 3600.0, clock=Clock(), ids=UploadIds(KEY))


@pytest.fixture
def writes(store: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each write transaction's durable flag, in order."""
    seen: list[bool] = []
    real = store._write

    def counted(durable: bool = True) -> AbstractContextManager[Connection]:
        seen.append(durable)
        return real(durable)

    monkeypatch.setattr(store, "_write", counted)
    return seen


def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def code_of(call: Callable[[], object]) -> tuple[ErrorCode, object]:
    with pytest.raises(RegistryError) as info:
        call()
    return info.value.code, info.value.detail


def blob_bytes(blobs: FilesystemBlobStore, data: bytes) -> bytes:
    return b"".join(blobs.read(digest(data)))


def test_a_first_patch_writes_no_transaction_and_the_closing_put_one(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore, writes: list[bool]
) -> None:
    session = uploads.start(REPO)
    patched = uploads.append_small(REPO, session.id, ByteRange(0, len(DATA) - 1), DATA)
    assert patched.offset == len(DATA)
    assert writes == []
    assert store.get_upload(REPO, session.id) is None  # the id and the file are the session
    assert uploads.status(REPO, session.id).offset == len(DATA)
    uploads.complete_small(REPO, session.id, digest(DATA))
    assert writes == [True]
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))
    assert store.get_upload(REPO, session.id).ended  # type: ignore[union-attr]
    assert blob_bytes(blobs, DATA) == DATA
    assert not list((blobs.root / "uploads").iterdir())


def test_a_first_patch_answers_only_once_its_bytes_are_synced(
    uploads: UploadService, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    session = uploads.start(REPO)
    assert uploads.append_small(REPO, session.id, None, DATA).offset == len(DATA)
    assert synced == [len(DATA)]


def test_a_first_patch_on_a_store_that_keeps_appends_apart_creates_its_row_after_its_bytes(
    uploads: UploadService, store: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on S3: the row says which appends count, so it is created, and only once the bytes
    are synced."""
    monkeypatch.setattr(uploads, "_first_patch_in_file", False)
    flushed: list[str] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        flushed.append("data")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    create = store.create_upload

    def checked(*args: object, **kwargs: object) -> bool:
        assert flushed == ["data"], "row recorded before the bytes were synced"
        return create(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "create_upload", checked)
    session = uploads.start(REPO)
    assert uploads.append_small(REPO, session.id, None, DATA).offset == len(DATA)
    assert store.get_upload(REPO, session.id).offset == len(DATA)  # type: ignore[union-attr]


def test_a_first_patch_survives_a_restart_and_the_upload_completes(
    uploads: UploadService, database_url: str, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)  # 202, then the process is killed
    engine = make_engine(database_url)
    try:
        restarted = UploadService(
            SqlMetadataStore(engine),
            FilesystemBlobStore(blobs.root),
            3600.0,
            clock=Clock(),
            ids=UploadIds(KEY),
        )
        assert restarted.status(REPO, session.id).offset == len(DATA)
        restarted.complete_small(REPO, session.id, digest(DATA))
    finally:
        engine.dispose()
    assert blob_bytes(blobs, DATA) == DATA


def test_a_first_patch_while_another_request_holds_the_session_is_told_to_retry(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    holder = uploads.begin_append(REPO, session.id, ByteRange(0, len(DATA) - 1))
    holder.write(DATA)
    code, _ = code_of(
        lambda: uploads.append_small(REPO, session.id, ByteRange(0, len(OTHER) - 1), OTHER)
    )
    assert code is ErrorCode.TOOMANYREQUESTS
    holder.finish()
    uploads.complete_small(REPO, session.id, digest(DATA))
    assert blob_bytes(blobs, DATA) == DATA


@pytest.mark.parametrize("other_writes_first", [True, False])
def test_a_request_that_takes_a_fresh_session_during_a_first_patch_wins_cleanly(
    uploads: UploadService,
    store: SqlMetadataStore,
    blobs: FilesystemBlobStore,
    monkeypatch: pytest.MonkeyPatch,
    other_writes_first: bool,
) -> None:
    """The first PATCH finds no row, then another request creates it and writes (before or
    after the PATCH's bytes land): the PATCH is told to retry (429) and the other request's
    upload holds exactly its own bytes."""
    session = uploads.start(REPO)
    create = blobs.create_upload
    others = []

    def raced(upload_id: str, claim: str, data: bytes) -> bool:
        other = uploads.begin_append(REPO, session.id, None)
        others.append(other)
        if other_writes_first:
            other.write(OTHER)
        stored = create(upload_id, claim, data)
        if not other_writes_first:
            other.write(OTHER)
        return stored

    monkeypatch.setattr(blobs, "create_upload", raced)
    code, detail = code_of(lambda: uploads.append_small(REPO, session.id, None, DATA))
    assert (code, detail) == (ErrorCode.TOOMANYREQUESTS, {"offset": 0})
    assert others[0].finish().offset == len(OTHER)
    monkeypatch.undo()
    uploads.complete_small(REPO, session.id, digest(OTHER))
    assert blob_bytes(blobs, OTHER) == OTHER


def test_a_second_first_patch_is_out_of_order_once_the_first_recorded_its_bytes(
    uploads: UploadService, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, ByteRange(0, len(DATA) - 1), DATA)
    code, detail = code_of(
        lambda: uploads.append_small(REPO, session.id, ByteRange(0, len(OTHER) - 1), OTHER)
    )
    assert (code, detail) == (ErrorCode.RANGE_INVALID, {"offset": len(DATA)})
    # A chunk without Content-Range goes on after it, as any PATCH does.
    assert uploads.append_small(REPO, session.id, None, OTHER).offset == len(DATA + OTHER)
    uploads.complete_small(REPO, session.id, digest(DATA + OTHER))
    assert blob_bytes(blobs, DATA + OTHER) == DATA + OTHER


def test_a_closing_put_while_a_patch_holds_the_session_is_told_to_retry(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)
    patch = uploads.begin_append(REPO, session.id, None)
    patch.write(OTHER)
    code, detail = code_of(lambda: uploads.complete_small(REPO, session.id, digest(DATA)))
    assert (code, detail) == (ErrorCode.TOOMANYREQUESTS, {"offset": len(DATA)})
    assert blobs.stat(digest(DATA)) is None  # nothing published under the writer
    patch.finish()
    uploads.complete_small(REPO, session.id, digest(DATA + OTHER))
    assert blob_bytes(blobs, DATA + OTHER) == DATA + OTHER


def test_a_closing_put_cut_between_publishing_and_its_commit_succeeds_when_retried(
    uploads: UploadService,
    store: SqlMetadataStore,
    blobs: FilesystemBlobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(store, "_link_blob", fail)
        with pytest.raises(RuntimeError):
            uploads.complete_small(REPO, session.id, digest(DATA))
    # Rolled back: the session is as the PATCH left it, the blob's bytes are in place.
    assert uploads.status(REPO, session.id).offset == len(DATA)
    assert blobs.stat(digest(DATA)) == len(DATA)
    uploads.complete_small(REPO, session.id, digest(DATA))
    assert store.linked_blob(REPO, str(digest(DATA))) == BlobRecord(len(DATA))
    assert blob_bytes(blobs, DATA) == DATA


def test_a_closing_put_with_the_wrong_digest_discards_the_upload(
    uploads: UploadService, store: SqlMetadataStore, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)
    code, _ = code_of(lambda: uploads.complete_small(REPO, session.id, digest(OTHER)))
    assert code is ErrorCode.DIGEST_INVALID
    assert store.get_upload(REPO, session.id).ended  # type: ignore[union-attr]
    assert blobs.stat(digest(DATA)) is None and blobs.stat(digest(OTHER)) is None


def test_a_first_patch_cut_before_its_answer_leaves_what_reached_the_file(
    uploads: UploadService, blobs: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 202 was given, so nothing was promised; the session reports the bytes that reached
    its file, as for any cut PATCH, and the client goes on from there."""
    session = uploads.start(REPO)

    def crash(*args: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(os, "fdatasync", crash)
    with pytest.raises(RuntimeError):
        uploads.append_small(REPO, session.id, None, DATA[:100])
    monkeypatch.undo()
    assert uploads.status(REPO, session.id).offset == 100
    code, detail = code_of(
        lambda: uploads.append_small(REPO, session.id, ByteRange(0, len(DATA) - 1), DATA)
    )
    assert (code, detail) == (ErrorCode.RANGE_INVALID, {"offset": 100})
    assert uploads.append_small(
        REPO, session.id, ByteRange(100, len(DATA) - 1), DATA[100:]
    ).offset == len(DATA)
    uploads.complete_small(REPO, session.id, digest(DATA))
    assert blob_bytes(blobs, DATA) == DATA


def test_a_put_with_a_body_after_a_first_patch_goes_on_from_its_bytes(
    uploads: UploadService, blobs: FilesystemBlobStore
) -> None:
    """The last chunk in the PUT: not a whole blob on an empty session, though no row says
    the session has bytes."""
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)
    assert not uploads.put_fresh(REPO, session.id, digest(DATA + OTHER), OTHER)
    append = uploads.begin_append(REPO, session.id, None)
    append.take(OTHER)
    append.complete(digest(DATA + OTHER))
    assert blob_bytes(blobs, DATA + OTHER) == DATA + OTHER


def test_a_request_that_takes_the_session_as_a_first_patch_stores_its_bytes_is_told_to_retry(
    uploads: UploadService,
    store: SqlMetadataStore,
    blobs: FilesystemBlobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It read the session as empty, then the first PATCH's bytes landed before its row:
    that row would hide them, so it answers 429 and leaves the session unheld."""
    session = uploads.start(REPO)
    create_row = store.create_upload

    def raced(*args: object, **kwargs: object) -> bool:
        assert blobs.create_upload(session.id, "0123456789abcdef", DATA)
        return create_row(*args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(store, "create_upload", raced)
        code, _ = code_of(lambda: uploads.begin_append(REPO, session.id, None))
    assert code is ErrorCode.TOOMANYREQUESTS
    # The first PATCH saw that row and was told to retry too: its retry is taken as any chunk.
    assert uploads.append_small(REPO, session.id, ByteRange(0, len(DATA) - 1), DATA).offset == len(
        DATA
    )
    uploads.complete_small(REPO, session.id, digest(DATA))
    assert blob_bytes(blobs, DATA) == DATA


def test_a_file_a_crashed_first_patch_left_without_a_row_is_swept(
    uploads: UploadService, blobs: FilesystemBlobStore
) -> None:
    session = uploads.start(REPO)
    assert blobs.create_upload(session.id, "0123456789abcdef", DATA)  # then the process died
    os.utime(blobs.root / "uploads" / session.id, (0, 0))
    uploads.expire()
    assert not list((blobs.root / "uploads").iterdir())


@pytest.mark.parametrize("more", [b"", OTHER])
def test_a_session_an_older_release_hashed_with_rehashes_completes(
    uploads: UploadService,
    blobs: FilesystemBlobStore,
    monkeypatch: pytest.MonkeyPatch,
    more: bytes,
) -> None:
    """An upload in flight across the upgrade: its first PATCH was hashed, and its state saved,
    by rehashes (as releases before the libcrypto hasher did). This release resumes that state,
    whether the closing PUT completes it alone or another PATCH comes first."""
    session_id = uploads.start(REPO).id
    with monkeypatch.context() as old_release:
        old_release.setattr(uploads_module, "new_hasher", lambda algorithm: rehashes.PySha256())
        old_release.setattr(uploads, "_first_patch_in_file", False)  # it created the row
        uploads.append_small(REPO, session_id, None, DATA)
    assert not uploads.status(REPO, session_id).hash_state.startswith(sha_libcrypto.TAG)
    if more:
        assert uploads.append_small(REPO, session_id, None, more).offset == len(DATA + more)
    uploads.complete_small(REPO, session_id, digest(DATA + more))
    assert blob_bytes(blobs, DATA + more) == DATA + more


def test_a_small_push_on_sqlite_runs_no_statement_through_sqlalchemy(
    tmp_path: Path, blobs: FilesystemBlobStore
) -> None:
    """Its statements go straight to the driver (metadata/prepared.py: SQLAlchemy's work per
    execution cost more than SQLite's); the push is recorded as ever."""
    engine = make_engine(f"sqlite:///{tmp_path / 'moorage.db'}")
    upgrade(engine)
    store = SqlMetadataStore(engine)
    uploads = UploadService(store, blobs, 3600.0, clock=Clock(), ids=UploadIds(KEY))
    assert uploads.put_fresh(REPO, uploads.start(REPO).id, digest(OTHER), OTHER)  # the repository
    executed: list[str] = []
    for each in (engine, store._read_engine):
        event.listen(each, "before_cursor_execute", lambda *a: executed.append(a[2]))
    data = os.urandom(4096)
    assert uploads.put_fresh(REPO, uploads.start(REPO).id, digest(data), data)  # POST + PUT
    session = uploads.start(REPO)  # POST + PATCH + PUT
    uploads.append_small(REPO, session.id, None, DATA)
    uploads.complete_small(REPO, session.id, digest(DATA))
    assert executed == []
    for pushed in (data, DATA):
        assert store.linked_blob(REPO, str(digest(pushed))) == BlobRecord(len(pushed))
        assert blob_bytes(blobs, pushed) == pushed
    assert store.get_upload(REPO, session.id).ended  # type: ignore[union-attr]
    engine.dispose()


def test_the_closing_put_publishes_the_first_patchs_synced_bytes_without_writing_them_again(
    uploads: UploadService, blobs: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def fdatasync(fd: int) -> None:
        synced.append("bytes")
        real_fdatasync(fd)

    def fsync(fd: int) -> None:
        synced.append("directory")
        real_fsync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)
    assert synced == ["bytes"]
    uploads.complete_small(REPO, session.id, digest(DATA))
    # The directory entries only (the blob's, and its shard's on the shard's first blob).
    assert synced[1:] in (["directory"], ["directory", "directory"])
    assert blob_bytes(blobs, DATA) == DATA
    assert not list((blobs.root / "uploads").iterdir())


def test_a_request_that_takes_the_session_while_the_closing_put_publishes_writes_a_copy(
    uploads: UploadService, blobs: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client racing itself: its next PATCH takes the session once the closing PUT has
    looked for a row. The PUT publishes the bytes it verified; the PATCH's append goes to a
    copy of the file and never into the published blob, and it loses the session the PUT
    ended."""
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)
    link = blobs.link_upload
    racing: list[object] = []

    def linked_then_taken(upload_id: str) -> str | None:
        name = link(upload_id)
        racing.append(uploads.begin_append(REPO, session.id, None))
        return name

    with monkeypatch.context() as patched:
        patched.setattr(blobs, "link_upload", linked_then_taken)
        # The PUT sees the row the PATCH created after its link: the ordinary way, 429.
        code, _ = code_of(lambda: uploads.complete_small(REPO, session.id, digest(DATA)))
    assert code is ErrorCode.TOOMANYREQUESTS
    append = racing[0]
    assert isinstance(append, uploads_module.Append)
    append.write(OTHER)
    append.finish()
    uploads.complete_small(REPO, session.id, digest(DATA + OTHER))
    assert blob_bytes(blobs, DATA + OTHER) == DATA + OTHER
    assert blobs.stat(digest(DATA)) is None


def test_an_append_to_an_upload_file_with_another_name_leaves_that_name_s_bytes_alone(
    uploads: UploadService, blobs: FilesystemBlobStore
) -> None:
    """The other order: the closing PUT's link is made before the PATCH's row, so the PUT
    goes on publishing those bytes while the PATCH appends."""
    session = uploads.start(REPO)
    uploads.append_small(REPO, session.id, None, DATA)
    snapshot = blobs.link_upload(session.id)
    assert snapshot is not None
    append = uploads.begin_append(REPO, session.id, None)
    append.write(OTHER)
    append.finish()
    assert b"".join(blobs.read_upload(snapshot, len(DATA) + len(OTHER))) == DATA
    assert b"".join(blobs.read_upload(session.id, len(DATA + OTHER))) == DATA + OTHER
    uploads.complete_small(REPO, session.id, digest(DATA + OTHER))
    assert blob_bytes(blobs, DATA + OTHER) == DATA + OTHER
