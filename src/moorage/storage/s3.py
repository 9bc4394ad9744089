"""Blobs in an S3 bucket (AWS, or an S3-compatible store through an endpoint URL), via obstore.

Layout in the bucket, under ``storage.s3.prefix``::

    <prefix>/
    ├── blobs/
    │   └── sha256/
    │       └── ab/
    │           └── ab12…(64 hex)          a complete, verified blob, named by its digest
    ├── uploads/
    │   └── 5f0c…(upload id)/
    │       ├── 00000000000000000000.9c1e…  bytes of the append that started at offset 0,
    │       │                               written by claim 9c1e… (segments.py)
    │       ├── 00000000000008388608.40af…  … of the append that started at offset 8388608
    │       └── published                  once the upload is a blob: "<digest>\n<location>"
    └── probe/<uuid>                        written, read and deleted by ``probe()``

Each append is one object, written as a multipart upload with bounded part buffers, so no
append ever holds a whole blob in memory or on disk. An S3 object exists only once complete,
so the listing of ``uploads/<id>/``, read through the claims the database recorded, *is* the
upload's durable state: any worker, or the same one after a restart, continues from it (see
``segments.py`` for which bytes count, and why a segment's name holds its claim).

A monolithic push (``open_blob``) streams straight to the blob's key. An upload session is
published *in place*: its segments stay where they are, the ``published`` marker keeps the
sweeper away from them, and ``commit_upload`` returns their location (``segments.py``) for the
metadata database to keep. S3 cannot rename, and copying to the blob's key would cost a
second transfer of every byte (moto copies at the speed it receives, halving the push rate;
S3's own copy runs at a few hundred MiB/s). The exception: with redirects on, a blob of
several segments is concatenated into the blob's key, because a pre-signed URL names one
object. Either way the blob appears atomically, complete or not at all.
"""

from __future__ import annotations

import contextlib
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
    PieceRef,
    Segment,
    byte_ranges,
    contiguous,
    counted,
    decode_location,
    encode_location,
    extent,
    parse_segment,
    segment_name,
)

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, RetryConfig, S3Config

READ_CHUNK = 1024 * 1024
PROBE_PAYLOAD = b"moorage storage probe"
# The marker object of an upload published in place.
PUBLISHED = "published"
# A blob of more appends than this is concatenated at commit rather than kept in place, which
# bounds the location string (about 25 bytes a piece) and the GETs a pull makes.
MAX_LOCATION_PIECES = 64


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

    # Each append is an object named by its claim: a displaced holder's late one is ignored.
    separate_appends = True
    publishes_locally = False

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

    @property
    def root(self) -> str:
        """The key prefix everything of this store lives under ("" or ending in "/")."""
        return self._root

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

    def _upload_keys(self, upload_id: str) -> list[tuple[str, int]]:
        """Every object under the upload's directory (segments and marker), with its size."""
        with self.failures:
            return [
                (meta["path"], meta["size"])
                for batch in obstore.list(self.s3, self._upload_dir(upload_id), chunk_size=1000)
                for meta in batch
            ]

    def _listing(self, upload_id: str) -> tuple[list[Segment], bool]:
        """The upload's segments, and whether it was published in place (it is a blob then,
        no longer an upload that may be appended to or read as one)."""
        directory = self._upload_dir(upload_id)
        found: list[Segment] = []
        published = False
        for key, size in self._upload_keys(upload_id):
            name = key[len(directory) :]
            published = published or name == PUBLISHED
            parsed = parse_segment(name)
            if parsed is not None:
                found.append(Segment(key, parsed[0], size, parsed[1]))
        return found, published

    def _segments(self, upload_id: str, appends: tuple[str, ...] | None) -> list[Segment]:
        """The segments that count of an upload in progress ([] once it is a blob)."""
        segments, published = self._listing(upload_id)
        return [] if published else counted(segments, appends)

    def _location_keys(self, location: str) -> tuple[str, list[PieceRef]]:
        """The upload directory and pieces of a location; BlobNotFound for a malformed one
        (the database and the store disagree: nothing there to serve)."""
        decoded = decode_location(location)
        if decoded is None:
            raise BlobNotFound(location[:64])
        upload_id, refs = decoded
        return self._upload_dir(upload_id), refs

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

    def stat(self, digest: Digest, location: str | None = None) -> int | None:
        try:
            if location is None:
                with self.failures:
                    return obstore.head(self.s3, self._blob_key(digest))["size"]
            directory, refs = self._location_keys(location)
            with self.failures:  # the first piece stands for all: they are deleted together
                obstore.head(self.s3, directory + refs[0].name)
            return sum(ref.length for ref in refs)
        except (FileNotFoundError, BlobNotFound):
            return None

    def local_path(self, digest: Digest, location: str | None = None) -> Path | None:
        return None

    def open_local(self, digest: Digest, location: str | None = None) -> int | None:
        return None

    def relative_path(self, digest: Digest, location: str | None = None) -> str | None:
        return None

    def read(
        self, digest: Digest, first: int = 0, last: int | None = None, location: str | None = None
    ) -> Iterator[bytes]:
        if location is not None:
            return self._read_in_place(location, first, last)
        options: GetOptions = {}
        if last is not None:
            options["range"] = (first, last + 1)
        elif first:
            options["range"] = {"offset": first}
        try:
            return self._stream(self._blob_key(digest), options)
        except FileNotFoundError:
            raise BlobNotFound(str(digest)) from None

    def _read_in_place(self, location: str, first: int, last: int | None) -> Iterator[bytes]:
        directory, refs = self._location_keys(location)
        ranges = [
            (directory + name, low, high) for name, low, high in byte_ranges(refs, first, last)
        ]
        if not ranges:
            return iter(())
        key, low, high = ranges[0]
        try:  # the first GET now, so that a missing blob raises before anything is yielded
            head = self._stream(key, {"range": (low, high)})
        except FileNotFoundError:
            raise BlobNotFound(location[:64]) from None
        return self._chain(head, ranges[1:])

    def _chain(self, head: Iterator[bytes], rest: list[tuple[str, int, int]]) -> Iterator[bytes]:
        yield from head
        for key, low, high in rest:
            try:
                yield from self._stream(key, {"range": (low, high)})
            except FileNotFoundError:  # deleted under us: the client sees a short read
                raise BlobNotFound(key) from None

    def redirect_url(self, digest: Digest, location: str | None = None) -> str | None:
        if self._redirect_expiry is None:
            return None
        key = self._blob_key(digest)
        if location is not None:
            directory, refs = self._location_keys(location)
            if len(refs) != 1:  # kept in place before redirects were turned on
                return None
            # A single-piece location is always a whole segment (see commit_upload).
            key = directory + refs[0].name
        with self.failures:
            return obstore.sign(self.s3, "GET", key, self._redirect_expiry)

    def delete(self, digest: Digest, location: str | None = None) -> None:
        if location is None:
            self.delete_key(self._blob_key(digest))
            return
        decoded = decode_location(location)
        if decoded is not None:
            self.abort_upload(decoded[0])

    def iter_blobs(self) -> Iterator[tuple[Digest, str | None]]:
        """Blobs at their digest's key, then those published in place (one GET of each
        marker: this is for rare full sweeps, not for requests)."""
        prefix = f"{self._root}blobs/"
        with self.failures:
            batches = list(obstore.list(self.s3, prefix, chunk_size=1000))
        for batch in batches:
            for meta in batch:
                parts = meta["path"][len(prefix) :].split("/")
                if len(parts) != 3 or parts[0] not in ALGORITHMS:
                    continue
                try:
                    yield Digest.parse(f"{parts[0]}:{parts[2]}"), None
                except RegistryError:  # a stray key someone put there
                    continue
        for marker in self._published_markers():
            try:
                with self.failures:
                    text = bytes(obstore.get(self.s3, marker).bytes()).decode()
                digest, _, location = text.partition("\n")
                yield Digest.parse(digest), location
            except (FileNotFoundError, UnicodeDecodeError, RegistryError):
                continue  # deleted since the listing, or not ours

    def _published_markers(self) -> list[str]:
        suffix = f"/{PUBLISHED}"
        with self.failures:
            return [
                meta["path"]
                for batch in obstore.list(self.s3, f"{self._root}uploads/", chunk_size=1000)
                for meta in batch
                if meta["path"].endswith(suffix)
            ]

    def open_upload(
        self,
        upload_id: str,
        offset: int,
        claim: str | None = None,
        appends: tuple[str, ...] | None = None,
    ) -> _S3UploadWriter:
        listed, published = self._listing(upload_id)
        if published:  # its segments are a blob now: never write over them
            raise BlobNotFound(upload_id)
        segments = counted(listed, appends)
        if offset > 0:
            if not segments:
                raise BlobNotFound(upload_id)
            if extent(contiguous(segments, offset)) < offset:
                raise UploadTruncated(upload_id)
        # Drop what an interrupted append of code before claims left at or past the offset
        # (everything of it when starting over at 0): named by its offset alone, it would count
        # ahead of this one. A segment of a claim that was never recorded does not count, and is
        # left alone: it may be a displaced holder's, and deleting by what this holder believes
        # counts could delete the bytes of a holder that displaced this one. It goes with the
        # upload (abort_upload: cancelled, expired, or the blob it became collected).
        for segment in listed:
            if segment.claim is None and segment.start >= offset:
                self.delete_key(segment.key)
        key = self._upload_dir(upload_id) + segment_name(offset, claim)
        return _S3UploadWriter(self, key)

    def link_upload(self, upload_id: str) -> None:
        # An object store has no second names: publishing an upload is a copy of its objects
        # (commit_upload), and the service keeps a session's row here (separate_appends).
        return None

    def create_upload(self, upload_id: str, claim: str, data: bytes) -> bool:
        # An object of this claim's own: nobody else writes it, and it counts only once the
        # database records the claim (which it does only if this request creates the row).
        writer = _S3UploadWriter(self, self._upload_dir(upload_id) + segment_name(0, claim))
        try:
            writer.write(data)
            writer.close()
        except BaseException:
            writer.discard()
            raise
        return True

    def open_blob(self, digest: Digest) -> SegmentWriter:
        # The multipart upload to the blob's own key completes only on close(), after the
        # caller verified the digest: no copy inside S3 at commit (that copy cost a third of a
        # monolithic push's time on moto), and no unverified byte is ever visible.
        return SegmentWriter(
            self.s3, self._blob_key(digest), self.part_size, self.failures.translate
        )

    def upload_size(self, upload_id: str, appends: tuple[str, ...] | None = None) -> int | None:
        segments = self._segments(upload_id, appends)
        return extent(contiguous(segments)) if segments else None

    def read_upload(
        self, upload_id: str, size: int, appends: tuple[str, ...] | None = None
    ) -> Iterator[bytes]:
        segments = self._segments(upload_id, appends)
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

    def commit_upload(
        self, upload_id: str, digest: Digest, size: int, appends: tuple[str, ...] | None = None
    ) -> str | None:
        segments, _ = self._listing(upload_id)  # published already: this is a retry
        if not segments:
            raise BlobNotFound(upload_id)
        pieces = contiguous(counted(segments, appends), size)
        if extent(pieces) < size:
            raise UploadTruncated(upload_id)
        whole = [p for p in pieces if p.length > 0]
        if whole and self._keep_in_place(whole):
            return self._publish_in_place(upload_id, digest, whole, segments)
        target = self._blob_key(digest)
        try:
            with self.failures:
                if size == 0:
                    obstore.put(self.s3, target, b"")
                else:
                    self._concatenate(pieces, target)
        except FileNotFoundError:
            raise BlobNotFound(upload_id) from None
        self.abort_upload(upload_id)
        return None

    def _keep_in_place(self, pieces: list[Piece]) -> bool:
        """Whether the pieces can be the blob where they are: each is its whole segment (no
        bytes of an interrupted append hide in one), and a redirect, which names one object,
        is possible when redirects are on."""
        if any(piece.length != piece.segment.size for piece in pieces):
            return False
        if self._redirect_expiry is not None:
            return len(pieces) == 1
        return len(pieces) <= MAX_LOCATION_PIECES

    def _publish_in_place(
        self, upload_id: str, digest: Digest, pieces: list[Piece], segments: list[Segment]
    ) -> str:
        location = encode_location(upload_id, pieces)
        used = {piece.segment.key for piece in pieces}
        for segment in segments:  # left by an append of code before claims that started over
            if segment.claim is None and segment.key not in used:
                self.delete_key(segment.key)
        # Written last: once it exists the sweeper leaves the upload alone, and it names what
        # the upload became (for a full sweep of the store, see iter_blobs).
        with self.failures:
            marker = self._upload_dir(upload_id) + PUBLISHED
            obstore.put(self.s3, marker, f"{digest}\n{location}".encode())
        return location

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
        for key, _ in self._upload_keys(upload_id):
            self.delete_key(key)

    def stale_uploads(self, modified_before: float) -> Iterator[str]:
        prefix = f"{self._root}uploads/"
        newest: dict[str, float] = {}
        published: set[str] = set()
        with self.failures:
            for batch in obstore.list(self.s3, prefix, chunk_size=1000):
                for meta in batch:
                    upload_id, _, name = meta["path"][len(prefix) :].partition("/")
                    if name == PUBLISHED:
                        published.add(upload_id)
                    modified = meta["last_modified"].timestamp()
                    newest[upload_id] = max(newest.get(upload_id, modified), modified)
        for upload_id, modified in newest.items():
            if modified < modified_before and upload_id not in published:
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
        except StorageUnavailable:
            # Clean up if we can, but report the first failure (the write's), not the delete's.
            with contextlib.suppress(StorageUnavailable):
                self.delete_key(key)
            raise
        self.delete_key(key)
