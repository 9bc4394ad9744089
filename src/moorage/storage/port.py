"""The ``BlobStore`` port: what the services need from a place that keeps bytes by digest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from moorage.oci.digest import Digest


class BlobNotFound(Exception):
    """The store has no blob (or upload) under that name."""


class UploadTruncated(Exception):
    """The upload holds fewer bytes than its recorded offset (lost in a power failure)."""


class StorageUnavailable(Exception):
    """The store cannot be used right now (missing bucket, denied, unreachable, failing).

    The message names the failure plainly for operators (``moorage storage check``, logs); it
    never carries credentials. Requests that meet it may be retried later (a 5xx)."""

    # How many times the store's client retried before giving up (the storage metrics).
    retries: int = 0


class StorageThrottled(StorageUnavailable):
    """The store asked us to slow down (S3 ``SlowDown`` / 503): retry after a pause."""


class UploadWriter(Protocol):
    """Appends bytes to one upload; obtained from :meth:`BlobStore.open_upload`."""

    def write(self, data: bytes) -> None:
        """Append ``data``; the bytes are not durable until :meth:`close`."""

    def close(self) -> None:
        """End this append with its bytes durable (so the caller may then record them)."""

    def discard(self) -> None:
        """Drop what this writer appended (the upload returns to where it was opened)."""


class BlobStore(Protocol):
    """Bytes by digest, plus in-progress uploads by id.

    A blob becomes visible (``stat`` finds it) only through :meth:`commit_upload` or a closed
    :meth:`open_blob` writer, which publish complete, verified bytes atomically; nothing
    half-written is ever visible. Publishing the same digest twice is harmless (the content is
    identical by definition).

    A blob lives at its digest's own place, or at a *location*: an opaque string
    :meth:`commit_upload` returns when the store published the upload's bytes where they were
    written instead of moving them (an object store cannot rename, and copying costs a second
    transfer). The caller keeps the location (in the metadata database) and passes it back to
    every method that reads or deletes the blob; ``location=None`` means the digest's place.

    An upload is written by a series of *claims* (each request that held the session's lease
    appends under a claim id of its own). A store that keeps each claim's append apart
    (``separate_appends``) reads only the appends of the claims the caller names (``appends``:
    the ones the database recorded, plus the caller's own; None: every append counts), so
    bytes a displaced holder writes late are never read as the upload's. A store that appends
    in place to one file cannot tell them apart: the caller must make sure the previous holder
    is certainly dead before it continues an upload there.
    """

    separate_appends: bool
    # ``commit_upload`` is a local rename, cheap enough to run inside a database transaction
    # (which then fences concurrent requests: UploadService.complete_unheld).
    publishes_locally: bool

    def stat(self, digest: Digest, location: str | None = None) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""

    def local_path(self, digest: Digest, location: str | None = None) -> Path | None:
        """A filesystem path the HTTP server may send directly, or None if remote."""

    def open_local(self, digest: Digest, location: str | None = None) -> int | None:
        """A read-only file descriptor of the blob's local file, for an HTTP server that reads
        it itself (the caller closes it); None when the blob is not a local file.

        Raises :class:`BlobNotFound` if the blob is missing. Once open, the bytes stay
        readable to the end even if the blob is deleted."""

    def relative_path(self, digest: Digest, location: str | None = None) -> str | None:
        """The blob's file below the store's ``blobs/`` directory (``sha256/ab/ab12…``), built
        from the digest alone, for a front proxy that serves that directory itself
        (X-Accel-Redirect); None when the blob is not a local file."""

    def read(
        self, digest: Digest, first: int = 0, last: int | None = None, location: str | None = None
    ) -> Iterator[bytes]:
        """Stream bytes ``first..last`` (inclusive; ``last=None`` to the end).

        Raises :class:`BlobNotFound` before yielding anything if the blob is missing."""

    def redirect_url(self, digest: Digest, location: str | None = None) -> str | None:
        """A URL clients may fetch the blob from directly, or None to stream through us."""

    def delete(self, digest: Digest, location: str | None = None) -> None:
        """Remove the blob; deleting a missing blob is not an error (idempotent)."""

    def iter_blobs(self) -> Iterator[tuple[Digest, str | None]]:
        """Every stored blob with its location, in no particular order."""

    def open_upload(
        self,
        upload_id: str,
        offset: int,
        claim: str | None = None,
        appends: tuple[str, ...] | None = None,
    ) -> UploadWriter:
        """Start appending to upload ``upload_id`` at ``offset`` (0 creates it), as ``claim``,
        after the appends of the claims ``appends``.

        Bytes beyond ``offset`` left by an interrupted earlier append are dropped first.
        Raises :class:`UploadTruncated` if fewer than ``offset`` bytes survived."""

    def create_upload(self, upload_id: str, claim: str, data: bytes) -> bool:
        """Store ``data`` durably as the first append (``claim``'s) of upload ``upload_id``,
        whole or not at all, unless the upload has bytes already or a writer opened it: then
        False, and nothing of the upload changed. For a session's first PATCH with a small body,
        which records its progress without ever holding a lease: no request writing the upload
        in place may see these bytes appear under it."""

    def link_upload(self, upload_id: str) -> str | None:
        """A second name for the upload's bytes as they are now, which no writer of the upload
        will change (one that appends to it copies the bytes first): an upload id of its own,
        to :meth:`read_upload`, :meth:`commit_upload` (publishing the bytes without copying
        them) or :meth:`abort_upload` (dropping only that name). None when the upload has no
        bytes, or the store has no such names (S3, whose appends are objects apart)."""

    def open_blob(self, digest: Digest) -> UploadWriter | None:
        """A writer straight to blob ``digest``'s own place, for a blob whose digest is known
        before its bytes (a monolithic push), or None when the store has no such path (then
        stage an upload and :meth:`commit_upload` it).

        Nothing is visible until ``close()``, which the caller calls only once it has verified
        the digest; ``discard()`` leaves nothing behind. Two writers of the same digest both
        publish the same verified bytes."""

    def upload_size(self, upload_id: str, appends: tuple[str, ...] | None = None) -> int | None:
        """Bytes held for the upload (may exceed the committed offset after a crash)."""

    def read_upload(
        self, upload_id: str, size: int, appends: tuple[str, ...] | None = None
    ) -> Iterator[bytes]:
        """Stream the first ``size`` bytes of an upload in progress."""

    def commit_upload(
        self, upload_id: str, digest: Digest, size: int, appends: tuple[str, ...] | None = None
    ) -> str | None:
        """Publish the first ``size`` bytes of the upload as blob ``digest``. Afterwards
        the upload is no longer listed by :meth:`stale_uploads`; :meth:`abort_upload` still
        removes what it published (for a session that ends without recording the blob).

        Returns the blob's location if the store published it in place, else None (the blob is
        at the digest's own place). Committing an upload again after it succeeded
        returns the same location, or raises BlobNotFound once the upload was moved (the caller
        then finds the blob with :meth:`stat`). The caller has verified the digest
        while writing. Raises :class:`BlobNotFound` if the upload does not exist,
        :class:`UploadTruncated` if it holds fewer than ``size`` bytes."""

    def abort_upload(self, upload_id: str) -> None:
        """Remove the upload's bytes; idempotent."""

    def stale_uploads(self, modified_before: float) -> Iterator[str]:
        """Ids of uploads whose bytes were last written before ``modified_before``."""

    def check(self) -> None:
        """Raise if the store cannot be used (for readiness checks); cheap, read-only."""

    def probe(self) -> None:
        """Write a small probe object, read it back and delete it.

        Raises :class:`StorageUnavailable` whose message names what failed."""
