"""Blobs in an S3 bucket (AWS, or an S3-compatible store through an endpoint URL), via obstore.

Layout in the bucket, under ``storage.s3.prefix``::

    <prefix>/
    ├── blobs/
    │   └── sha256/
    │       └── ab/
    │           └── ab12…(64 hex)          a complete, verified blob, named by its digest
    ├── uploads/
    │   └── 5f0c…(upload id)/
    │       ├── 00000000000000000000       bytes of the append that started at offset 0
    │       └── 00000000000008388608       … of the append that started at offset 8388608
    └── probe/<uuid>                        written, read and deleted by ``probe()``

Each append is one object, written as a multipart upload with bounded part buffers, so no
append ever holds a whole blob in memory or on disk. An S3 object exists only once complete,
so the listing of ``uploads/<id>/`` *is* the upload's durable state: any worker, or the same
one after a restart, continues from it (see ``segments.py`` for which bytes count). A blob is
published by one server-side copy when the upload is a single append (a monolithic push or a
single PATCH: the common case), otherwise by streaming its segments into one multipart upload
of the blob key; either way it appears atomically, complete or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from moorage.config import S3Settings
from moorage.errors import RegistryError
from moorage.oci.digest import ALGORITHMS, Digest
from moorage.storage.port import BlobNotFound, StorageUnavailable, UploadTruncated
from moorage.storage.s3_errors import classify, is_missing_key
from moorage.storage.s3_writer import SegmentWriter
from moorage.storage.segments import (
    Piece,
    Segment,
    contiguous,
    extent,
    parse_segment_name,
    segment_name,
)

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, RetryConfig, S3Config

READ_CHUNK = 1024 * 1024
# S3's single CopyObject limit; bigger single-append uploads are streamed instead.
MAX_COPY_BYTES = 5 * 1024**3
PROBE_PAYLOAD = b"moorage storage probe"


class _Failures(AbstractContextManager[None]):
    """Turns obstore's errors into ours; a missing *object* stays FileNotFoundError."""

    def __init__(self, bucket: str, endpoint: str) -> None:
        self._bucket = bucket
        self._endpoint = endpoint

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, FileNotFoundError) and is_missing_key(str(exc)):
            return exc  # callers decide what a missing object means
        if isinstance(exc, (BaseError, OSError)):
            return classify(str(exc), self._bucket, self._endpoint)
        return exc

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        translated = self.translate(exc)
        if translated is not exc:
            raise translated from None


class _S3UploadWriter:
    """One append: one segment object, uploaded in parts while the bytes arrive."""

    def __init__(self, store: S3BlobStore, key: str) -> None:
        self._store = store
        self._key = key
        self._segment = SegmentWriter(store.s3, key, store.part_size, store.failures.translate)

    def write(self, data: bytes) -> None:
        self._segment.write(data)

    def close(self) -> None:
        # Completing the multipart upload makes the segment exist, whole; until then nothing
        # of this append is visible to the next one.
        self._segment.close()

    def discard(self) -> None:
        # The multipart upload is abandoned, never completed, so the segment never exists.
        # Deleting the key too keeps a retried discard exact.
        self._segment.discard()
        self._store.delete_key(self._key)


class S3BlobStore:
    """A :class:`~moorage.storage.port.BlobStore` in an S3 bucket."""

    def __init__(
        self,
        store: S3Store,
        *,
        bucket: str,
        endpoint: str,
        prefix: str = "",
        part_size: int = 8 * 1024 * 1024,
        redirect_expiry: timedelta | None = None,
    ) -> None:
        self.s3 = store
        self.part_size = part_size
        self.failures = _Failures(bucket, endpoint)
        self._root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._redirect_expiry = redirect_expiry

    @classmethod
    def from_settings(cls, s3: S3Settings) -> S3BlobStore:
        """Credentials from the settings, else the AWS default chain (environment, web
        identity, ECS and EC2 instance roles), which obstore resolves and refreshes."""
        config: S3Config = {}
        if s3.region:
            config["region"] = s3.region
        if s3.endpoint_url:
            config["endpoint"] = s3.endpoint_url
        if s3.access_key_id:
            config["access_key_id"] = s3.access_key_id
            if s3.secret_access_key is not None:
                config["secret_access_key"] = s3.secret_access_key.get_secret_value()
            if s3.session_token is not None:
                config["session_token"] = s3.session_token.get_secret_value()
        client: ClientConfig = {
            "allow_http": bool(s3.endpoint_url and s3.endpoint_url.startswith("http://")),
            "connect_timeout": timedelta(seconds=5),
        }
        # A failing store should become a retryable 5xx within seconds, not hold a request
        # for obstore's default three minutes.
        retry: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}
        store = S3Store(s3.bucket, config=config, client_options=client, retry_config=retry)
        endpoint = s3.endpoint_url or f"s3 ({s3.region or 'default region'})"
        return cls(
            store,
            bucket=s3.bucket,
            endpoint=endpoint,
            prefix=s3.prefix,
            part_size=s3.part_size_bytes,
            redirect_expiry=timedelta(seconds=s3.redirect_expiry_seconds) if s3.redirect else None,
        )

    # --- keys ---

    def _blob_key(self, digest: Digest) -> str:
        return f"{self._root}blobs/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"

    def _upload_dir(self, upload_id: str) -> str:
        # Upload ids are generated by us (hex uuid4), validated before they get here.
        return f"{self._root}uploads/{upload_id}/"

    # --- small operations with the local-vs-S3 differences smoothed ---

    def delete_key(self, key: str) -> None:
        """Delete ``key``; a missing key is not an error (S3 says 204, local stores 404)."""
        try:
            with self.failures:
                obstore.delete(self.s3, key)
        except FileNotFoundError:
            pass

    def _segments(self, upload_id: str) -> list[Segment]:
        directory = self._upload_dir(upload_id)
        found: list[Segment] = []
        with self.failures:
            for batch in obstore.list(self.s3, directory, chunk_size=1000):
                for meta in batch:
                    start = parse_segment_name(meta["path"][len(directory) :])
                    if start is not None:
                        found.append(Segment(meta["path"], start, meta["size"]))
        return found

    def _stream(self, key: str, options: GetOptions | None = None) -> Iterator[bytes]:
        """Issue the GET now (so a missing key raises before anything is yielded)."""
        with self.failures:
            result = obstore.get(self.s3, key, options=options)
        return self._chunks(result.stream(min_chunk_size=READ_CHUNK))

    def _chunks(self, stream: Iterable[object]) -> Iterator[bytes]:
        iterator = iter(stream)
        while True:
            with self.failures:
                chunk = next(iterator, None)
            if chunk is None:
                return
            yield bytes(chunk)  # type: ignore[call-overload]

    # --- BlobStore ---

    def stat(self, digest: Digest) -> int | None:
        try:
            with self.failures:
                return obstore.head(self.s3, self._blob_key(digest))["size"]
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest) -> Path | None:
        return None

    def read(self, digest: Digest, first: int = 0, last: int | None = None) -> Iterator[bytes]:
        options: GetOptions = {}
        if last is not None:
            options["range"] = (first, last + 1)
        elif first:
            options["range"] = {"offset": first}
        try:
            return self._stream(self._blob_key(digest), options)
        except FileNotFoundError:
            raise BlobNotFound(str(digest)) from None

    def redirect_url(self, digest: Digest) -> str | None:
        if self._redirect_expiry is None:
            return None
        with self.failures:
            return obstore.sign(self.s3, "GET", self._blob_key(digest), self._redirect_expiry)

    def delete(self, digest: Digest) -> None:
        self.delete_key(self._blob_key(digest))

    def iter_digests(self) -> Iterator[Digest]:
        prefix = f"{self._root}blobs/"
        with self.failures:
            batches = list(obstore.list(self.s3, prefix, chunk_size=1000))
        for batch in batches:
            for meta in batch:
                parts = meta["path"][len(prefix) :].split("/")
                if len(parts) != 3 or parts[0] not in ALGORITHMS:
                    continue
                try:
                    yield Digest.parse(f"{parts[0]}:{parts[2]}")
                except RegistryError:  # a stray key someone put there
                    continue

    def open_upload(self, upload_id: str, offset: int) -> _S3UploadWriter:
        segments = self._segments(upload_id)
        if offset > 0:
            if not segments:
                raise BlobNotFound(upload_id)
            if extent(contiguous(segments, offset)) < offset:
                raise UploadTruncated(upload_id)
        # Drop what an interrupted append left at or past the offset (and everything when
        # starting over at 0), so the listing never holds a stale segment ahead of this one.
        for segment in segments:
            if segment.start >= offset:
                self.delete_key(segment.key)
        return _S3UploadWriter(self, self._upload_dir(upload_id) + segment_name(offset))

    def open_blob(self, digest: Digest) -> SegmentWriter:
        # The multipart upload to the blob's own key completes only on close(), after the
        # caller verified the digest: no copy inside S3 at commit (that copy cost a third of a
        # monolithic push's time on moto), and no unverified byte is ever visible.
        return SegmentWriter(
            self.s3, self._blob_key(digest), self.part_size, self.failures.translate
        )

    def upload_size(self, upload_id: str) -> int | None:
        segments = self._segments(upload_id)
        return extent(contiguous(segments)) if segments else None

    def read_upload(self, upload_id: str, size: int) -> Iterator[bytes]:
        segments = self._segments(upload_id)
        if not segments:
            raise BlobNotFound(upload_id)
        return self._read_pieces(contiguous(segments, size))

    def _read_pieces(self, pieces: list[Piece]) -> Iterator[bytes]:
        for piece in pieces:
            if piece.length == 0:
                continue
            try:
                yield from self._stream(piece.segment.key, {"range": (0, piece.length)})
            except FileNotFoundError:  # aborted under us: the caller sees a short read
                raise BlobNotFound(piece.segment.key) from None

    def commit_upload(self, upload_id: str, digest: Digest, size: int) -> None:
        segments = self._segments(upload_id)
        if not segments:
            raise BlobNotFound(upload_id)
        pieces = contiguous(segments, size)
        if extent(pieces) < size:
            raise UploadTruncated(upload_id)
        target = self._blob_key(digest)
        whole = [p for p in pieces if p.length > 0]
        single = len(whole) == 1 and whole[0].segment.size == size
        try:
            with self.failures:
                if single and size <= MAX_COPY_BYTES:
                    # Server-side: no byte passes through us. Same digest, same bytes, so
                    # overwriting a concurrent twin is harmless (and S3 cannot copy-if-absent).
                    obstore.copy(self.s3, whole[0].segment.key, target, overwrite=True)
                elif size == 0:
                    obstore.put(self.s3, target, b"")
                else:
                    self._concatenate(pieces, target)
        except FileNotFoundError:
            raise BlobNotFound(upload_id) from None
        self.abort_upload(upload_id)

    def _concatenate(self, pieces: list[Piece], target: str) -> None:
        """Stream the pieces into one multipart upload of ``target``, a part at a time.

        S3's UploadPartCopy would avoid the transfer, but obstore does not expose it. The
        upload is completed only after the last piece: on any failure it is abandoned, and an
        uncompleted upload never becomes an object (nothing half-visible)."""
        writer = SegmentWriter(self.s3, target, self.part_size, self.failures.translate)
        try:
            for chunk in self._read_pieces(pieces):
                writer.write(chunk)
        except BaseException:
            writer.discard()
            raise
        writer.close()

    def abort_upload(self, upload_id: str) -> None:
        for segment in self._segments(upload_id):
            self.delete_key(segment.key)

    def stale_uploads(self, modified_before: float) -> Iterator[str]:
        prefix = f"{self._root}uploads/"
        newest: dict[str, float] = {}
        with self.failures:
            for batch in obstore.list(self.s3, prefix, chunk_size=1000):
                for meta in batch:
                    upload_id = meta["path"][len(prefix) :].split("/", 1)[0]
                    modified = meta["last_modified"].timestamp()
                    newest[upload_id] = max(newest.get(upload_id, modified), modified)
        for upload_id, modified in newest.items():
            if modified < modified_before:
                yield upload_id

    def check(self) -> None:
        # One ListObjectsV2 with a delimiter: proves bucket, credentials, region and endpoint.
        with self.failures:
            obstore.list_with_delimiter(self.s3, self._root or None)

    def probe(self) -> None:
        key = f"{self._root}probe/{uuid.uuid4().hex}"
        try:
            with self.failures:
                obstore.put(self.s3, key, PROBE_PAYLOAD)
                if bytes(obstore.get(self.s3, key).bytes()) != PROBE_PAYLOAD:
                    raise StorageUnavailable("the probe object read back different bytes")
        except FileNotFoundError:
            raise StorageUnavailable("the probe object vanished after it was written") from None
        finally:
            self.delete_key(key)
