"""Blobs on a local filesystem.

Layout under the data directory::

    <root>/
    ├── blobs/
    │   └── sha256/
    │       └── ab/
    │           └── ab12…(64 hex)        a complete, verified blob, named by its digest
    └── uploads/
        └── 5f0c…(upload id)             bytes of an upload in progress

A blob is written under ``uploads/``, fsynced, then renamed into ``blobs/`` (and the directory
fsynced), so a blob path exists only when its bytes are complete and durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from moorage.oci.digest import ALGORITHMS, Digest
from moorage.storage.port import BlobNotFound, StorageUnavailable, UploadTruncated

READ_CHUNK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Start writing dirty pages back every this many bytes, so the fdatasync that ends each request
# has little left to wait for (on a 1 GiB push it otherwise waited ~0.6 s for the whole file at
# once). Well below the 16 MiB of a typical chunked PATCH: with writeback started only at 16 MiB,
# each chunk's fdatasync waited for the whole chunk.
WRITEBACK_EVERY = 4 * 1024 * 1024


def _start_writeback() -> Callable[[int, int, int], None]:
    """``sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)``: begin writeback of a
    range without waiting for it. Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sync_file_range = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    sync_file_range_write = 2

    def start(fd: int, offset: int, length: int) -> None:
        sync_file_range(fd, offset, length, sync_file_range_write)

    return start


start_writeback = _start_writeback()


# Writes at least this big go to a background thread, so that the caller can hash the next
# batch while the kernel copies this one (os.write releases the GIL; the resumable hasher does
# not). One write per upload is in flight at a time, which keeps the bytes in order and the
# memory bounded; different uploads write in parallel.
WRITE_BEHIND_MIN = 256 * 1024
_write_behind = ThreadPoolExecutor(max_workers=16, thread_name_prefix="moorage-write")


def _create_new(path: Path) -> int:
    """A new, empty file at ``path``, whatever was there before: an earlier file is unlinked,
    not truncated, so that whoever still has it open (a crashed append's leftovers, a
    displaced holder, a first PATCH that lost the race: ``create_upload``) writes only into a
    file nobody reads any more. Created exclusively: another creator that slips in between
    is unlinked the same way."""
    while True:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            continue


def _private_copy(path: Path, length: int) -> int:
    """Replace ``path`` by a copy of its first ``length`` bytes, synced and durably in its
    place; returns the copy, open for writing at its end."""
    copy = path.with_name(f"{path.name}.{uuid.uuid4().hex[:16]}")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with path.open("rb") as source:
            copied = 0
            while copied < length:
                sent = os.copy_file_range(source.fileno(), fd, length - copied)
                if sent == 0:
                    raise UploadTruncated(path.name)
                copied += sent
        os.fdatasync(fd)
        os.replace(copy, path)
        _fsync_dir(path.parent)
    except FileNotFoundError:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
        raise BlobNotFound(path.name) from None
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
        raise
    return fd


class _FileUploadWriter:
    def __init__(self, path: Path, offset: int) -> None:
        self._offset = offset
        self._position = offset
        self._flushed = offset
        self._pending: Future[None] | None = None
        if offset == 0:
            self._fd = _create_new(path)
            return
        try:
            self._fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise BlobNotFound(path.name) from None
        status = os.fstat(self._fd)
        if status.st_size < offset:
            os.close(self._fd)
            raise UploadTruncated(path.name)
        if status.st_nlink > 1:
            # The file has another name (FilesystemBlobStore.link_upload: a closing PUT may be
            # publishing these bytes as a blob by a hard link): never written, copied first.
            os.close(self._fd)
            self._fd = _private_copy(path, offset)
        # Drop bytes an interrupted append (a crash, a cut connection) left past the offset.
        os.ftruncate(self._fd, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)

    def write(self, data: bytes) -> None:
        self._wait_for_pending()
        if len(data) >= WRITE_BEHIND_MIN:
            self._pending = _write_behind.submit(self._write_now, data)
        else:
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._position += len(data)
        if self._position - self._flushed >= WRITEBACK_EVERY:
            start_writeback(self._fd, self._flushed, self._position - self._flushed)
            self._flushed = self._position

    def _wait_for_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # re-raises a failed write (disk full, I/O error)

    def close(self) -> None:
        # fdatasync before the caller records the new offset and hash state: otherwise a power
        # failure could keep the record but not the bytes, and the session would go on from
        # zeros. Cheaper than re-reading the whole upload at completion: writeback has been
        # running every 16 MiB, and the fsync in commit_upload then has nothing left to do.
        try:
            self._wait_for_pending()
            os.fdatasync(self._fd)
        finally:
            os.close(self._fd)

    def discard(self) -> None:
        try:
            with contextlib.suppress(OSError):
                self._wait_for_pending()
            os.ftruncate(self._fd, self._offset)
        finally:
            os.close(self._fd)


def _relative_path(digest: Digest) -> str:
    """``<alg>/<2 hex>/<hex>``: a parsed digest is a known algorithm and lower-case hex only, so
    the path can never leave the blobs directory (it also goes to nginx in X-Accel-Redirect)."""
    return f"{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"


class FilesystemBlobStore:
    """A :class:`~moorage.storage.port.BlobStore` on a local directory."""

    # One file per upload, appended in place: a displaced writer could still write into it,
    # so a session is taken over early only from a holder the kernel says is dead.
    separate_appends = False
    publishes_locally = True

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        for algorithm in ALGORITHMS:
            (self._blobs / algorithm).mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)

    def _blob_path(self, digest: Digest) -> Path:
        return self._blobs / _relative_path(digest)

    def _upload_path(self, upload_id: str) -> Path:
        # Upload ids are generated by us (hex uuid4), validated before they get here.
        return self._uploads / upload_id

    # A rename publishes an upload for free, so every blob here is at its digest's own path:
    # ``commit_upload`` returns no location, and ``location`` is never anything but None.

    def stat(self, digest: Digest, location: str | None = None) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest, location: str | None = None) -> Path | None:
        return self._blob_path(digest)

    def open_local(self, digest: Digest, location: str | None = None) -> int:
        try:
            return os.open(self._blob_path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFound(str(digest)) from None

    def relative_path(self, digest: Digest, location: str | None = None) -> str:
        return _relative_path(digest)

    def read(
        self, digest: Digest, first: int = 0, last: int | None = None, location: str | None = None
    ) -> Iterator[bytes]:
        try:
            handle = self._blob_path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(str(digest)) from None
        return self._chunks(handle, first, last)

    @staticmethod
    def _chunks(handle: BinaryIO, first: int, last: int | None) -> Iterator[bytes]:
        with handle:
            handle.seek(first)
            remaining = None if last is None else last - first + 1
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk: bytes = handle.read(size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def redirect_url(self, digest: Digest, location: str | None = None) -> str | None:
        return None

    def delete(self, digest: Digest, location: str | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._blob_path(digest).unlink()

    def iter_blobs(self) -> Iterator[tuple[Digest, str | None]]:
        for algorithm in ALGORITHMS:
            for path in (self._blobs / algorithm).glob("*/*"):
                yield Digest(algorithm, path.name), None

    def open_upload(
        self,
        upload_id: str,
        offset: int,
        claim: str | None = None,
        appends: tuple[str, ...] | None = None,
    ) -> _FileUploadWriter:
        return _FileUploadWriter(self._upload_path(upload_id), offset)

    def create_upload(self, upload_id: str, claim: str, data: bytes) -> bool:
        # Created exclusively at the upload's own name: a file there (a request holding the
        # session created it, or a crash left it) refuses this. A holder that starts the
        # upload after this (offset 0) unlinks this file and writes a new one (_create_new),
        # so these bytes never land under its writes. On failure the file is left as it is:
        # by then it may be another request's, and the next append at 0 replaces it anyway.
        try:
            fd = os.open(self._upload_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            return False
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # As for every upload file a first append creates, this makes its name durable
            # too: a new file's directory entry goes with its first sync (ext4, with a journal
            # or without, XFS, btrfs).
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return True

    def link_upload(self, upload_id: str) -> str | None:
        # A hard link beside it. Writers append in place only to a file with no other name
        # (_FileUploadWriter copies one that has), so the bytes under this one stay as they are.
        name = f"{upload_id}.{uuid.uuid4().hex[:16]}"
        try:
            os.link(self._upload_path(upload_id), self._upload_path(name))
        except OSError:  # no bytes, or no hard links here: the caller goes the ordinary way
            return None
        return name

    def open_blob(self, digest: Digest) -> None:
        # Publishing a staged upload is a rename here: as cheap as writing in place.
        return None

    def upload_size(self, upload_id: str, appends: tuple[str, ...] | None = None) -> int | None:
        try:
            return self._upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            return None

    def read_upload(
        self, upload_id: str, size: int, appends: tuple[str, ...] | None = None
    ) -> Iterator[bytes]:
        try:
            handle = self._upload_path(upload_id).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(upload_id) from None
        return self._chunks(handle, 0, size - 1)

    def commit_upload(
        self, upload_id: str, digest: Digest, size: int, appends: tuple[str, ...] | None = None
    ) -> None:
        """Rename the upload into place; a retried commit after the rename finds no upload
        (BlobNotFound) and the caller checks the published blob instead."""
        source = self._upload_path(upload_id)
        try:
            fd = os.open(source, os.O_WRONLY)
        except FileNotFoundError:
            raise BlobNotFound(upload_id) from None
        try:
            # Never extend: a file shorter than recorded lost bytes, and growing it would
            # publish zeros under a digest they do not have.
            length = os.fstat(fd).st_size
            if length < size:
                raise UploadTruncated(upload_id)
            # Every writer fdatasyncs its bytes before its caller records them (close()), so a
            # file of exactly the recorded size is durable already: a second fsync here only
            # cost each push another disk flush. Bytes past it (an append cut short) are cut.
            if length > size:
                os.ftruncate(fd, size)
                os.fsync(fd)
        finally:
            os.close(fd)
        target = self._blob_path(digest)
        # Same digest, same bytes: replacing a concurrent twin's file is harmless. The shard
        # directory is made only when missing (a mkdir first failed with EEXIST on every push).
        try:
            os.replace(source, target)
        except FileNotFoundError:
            if not source.exists():
                raise BlobNotFound(upload_id) from None
            with contextlib.suppress(FileExistsError):
                target.parent.mkdir()
                _fsync_dir(target.parent.parent)  # the new shard's entry must be durable
            os.replace(source, target)
        _fsync_dir(target.parent)

    def abort_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._upload_path(upload_id).unlink()

    def stale_uploads(self, modified_before: float) -> Iterator[str]:
        for path in self._uploads.iterdir():
            try:
                if path.stat().st_mtime < modified_before:
                    yield path.name
            except FileNotFoundError:
                continue

    def check(self) -> None:
        probe = self._uploads / ".ready-probe"
        probe.write_bytes(b"")
        probe.unlink()

    def probe(self) -> None:
        # Under uploads/: a probe left by a crash is swept like any orphaned upload.
        probe = self._uploads / f".probe-{uuid.uuid4().hex}"
        payload = b"moorage storage probe"
        try:
            probe.write_bytes(payload)
            try:
                if probe.read_bytes() != payload:
                    raise StorageUnavailable(f"{self._uploads}: read back different bytes")
            finally:
                probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"{self._uploads}: {exc.strerror or exc}") from None
