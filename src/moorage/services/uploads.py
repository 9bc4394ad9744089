"""Blob uploads: sessions, chunked appends, verification and publication, cross-repo mounts.

An upload's state (offset and serialised hash state) lives in the metadata store, so any worker
or node can take the next request and a session survives a restart. Bytes are hashed while they
are written; the digest is checked before the blob is published, and a blob is linked to the
repository only after its bytes are durable.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.port import MetadataStore, UploadBusy
from moorage.metadata.records import UploadSession
from moorage.oci.digest import DEFAULT_ALGORITHM, Digest, check_algorithm
from moorage.oci.ranges import ByteRange
from moorage.services.hashing import ResumableHasher, new_hasher, resume_hasher
from moorage.storage.port import BlobNotFound, BlobStore, UploadTruncated, UploadWriter

_UPLOAD_ID = re.compile(r"^[a-f0-9]{32}$")

# An append holds a lease on its session so two requests never write the same upload at once;
# a long append renews it, and a crashed worker's lease runs out.
LEASE_SECONDS = 60.0
LEASE_RENEW_AFTER = 20.0


def _unknown_upload(upload_id: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:64]})


class ByteSink(Protocol):
    """Where a request body goes: ``write`` each piece, then ``abort`` on failure."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


class Append:
    """One request's worth of bytes going into an upload. Use :meth:`write` for each piece of
    the body, then exactly one of :meth:`finish` or :meth:`abort`."""

    def __init__(
        self,
        uploads: UploadService,
        session: UploadSession,
        writer: UploadWriter,
        hasher: ResumableHasher,
        expected_length: int | None,
    ) -> None:
        self._uploads = uploads
        self.session = session
        self._writer = writer
        self._hasher = hasher
        self._expected_length = expected_length
        self.written = 0
        self._lease_renewed = uploads.clock()

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        self._writer.write(data)
        self.written += len(data)
        now = self._uploads.clock()
        if now - self._lease_renewed > LEASE_RENEW_AFTER:
            self._uploads.metadata.extend_lease(self.session.id, now + LEASE_SECONDS)
            self._lease_renewed = now

    def finish(self) -> UploadSession:
        """Make the bytes durable and record the new offset and hash state."""
        if self._expected_length is not None and self.written != self._expected_length:
            self.abort()
            raise RegistryError(
                ErrorCode.SIZE_INVALID,
                "chunk length does not match Content-Range",
                {"expected": self._expected_length, "received": self.written},
            )
        self._writer.close()
        offset = self.session.offset + self.written
        state = self._hasher.serialize()
        now = self._uploads.clock()
        self._uploads.metadata.release_upload(self.session.id, offset, state, now)
        return UploadSession(
            id=self.session.id,
            repository=self.session.repository,
            algorithm=self.session.algorithm,
            offset=offset,
            hash_state=state,
            created_at=self.session.created_at,
            updated_at=now,
        )

    def abort(self) -> None:
        """Drop this request's bytes; the session stays where it was before."""
        self._writer.discard()
        s = self.session
        self._uploads.metadata.release_upload(s.id, s.offset, s.hash_state, self._uploads.clock())


class WholeBlob:
    """A blob pushed in one request (``POST ?digest=``): no session, no state in the database,
    just hash while writing, verify, publish and link. When the blob is already stored the
    bytes are only hashed (the client must still prove it has them), never written again."""

    def __init__(self, uploads: UploadService, repository: str, digest: Digest) -> None:
        self._uploads = uploads
        self._repository = repository
        self._digest = digest
        # hashlib, not a resumable hasher: nothing is resumed here, and hashlib releases the
        # GIL while it hashes, so receiving the next bytes overlaps with hashing these.
        self._hasher = hashlib.new(digest.algorithm)
        self._upload_id = uuid.uuid4().hex
        stored = uploads.blobs.stat(digest) is not None
        self._writer = None if stored else uploads.blobs.open_upload(self._upload_id, 0)
        self.written = 0

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        if self._writer is not None:
            self._writer.write(data)
        self.written += len(data)

    def finish(self) -> None:
        if self._hasher.hexdigest() != self._digest.encoded:
            self.abort()
            raise _digest_mismatch(self._digest)
        if self._writer is not None:
            self._writer.close()
            self._uploads.blobs.commit_upload(self._upload_id, self._digest, self.written)
        self._uploads.metadata.link_blob(self._repository, str(self._digest), self.written)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.discard()
            self._uploads.blobs.abort_upload(self._upload_id)


def _digest_mismatch(digest: Digest) -> RegistryError:
    return RegistryError(
        ErrorCode.DIGEST_INVALID,
        "uploaded content does not match the digest",
        {"digest": str(digest)},
    )


class UploadService:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        expiry_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.expiry_seconds = expiry_seconds
        self.clock = clock

    def start(self, repository: str, algorithm: str | None = None) -> UploadSession:
        """Open a new upload session for ``repository``."""
        algorithm = check_algorithm(algorithm) if algorithm else DEFAULT_ALGORITHM
        now = self.clock()
        session = UploadSession(
            id=uuid.uuid4().hex,
            repository=repository,
            algorithm=algorithm,
            offset=0,
            hash_state=new_hasher(algorithm).serialize(),
            created_at=now,
            updated_at=now,
        )
        self.metadata.create_upload(session)
        return session

    def begin_whole(self, repository: str, digest: Digest) -> WholeBlob:
        """Receive a whole blob in one request (monolithic upload)."""
        return WholeBlob(self, repository, digest)

    def put_whole(self, repository: str, digest: Digest, data: bytes) -> None:
        """A small monolithic upload already in memory, in one call."""
        whole = WholeBlob(self, repository, digest)
        whole.write(data)
        whole.finish()

    def status(self, repository: str, upload_id: str) -> UploadSession:
        session = self._get(repository, upload_id)
        return session

    def _get(self, repository: str, upload_id: str) -> UploadSession:
        if not _UPLOAD_ID.match(upload_id):
            raise _unknown_upload(upload_id)
        session = self.metadata.get_upload(repository, upload_id)
        if session is None:
            raise _unknown_upload(upload_id)
        return session

    def begin_append(
        self, repository: str, upload_id: str, content_range: ByteRange | None
    ) -> Append:
        """Claim the session for one request's bytes.

        With ``content_range`` the chunk must start where the upload ends (else 416 and the
        current progress in the error's headers)."""
        if not _UPLOAD_ID.match(upload_id):
            raise _unknown_upload(upload_id)
        now = self.clock()
        try:
            session = self.metadata.claim_upload(repository, upload_id, now, LEASE_SECONDS)
        except UploadBusy:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                "another request is writing to this upload",
                status=416,
            ) from None
        if session is None:
            raise _unknown_upload(upload_id)
        if content_range is not None and content_range.first != session.offset:
            self.metadata.release_upload(session.id, session.offset, session.hash_state, now)
            raise RegistryError(
                ErrorCode.RANGE_INVALID,
                f"chunk must start at offset {session.offset}",
                {"offset": session.offset, "first": content_range.first},
            )
        try:
            writer = self.blobs.open_upload(session.id, session.offset)
        except (UploadTruncated, BlobNotFound):
            self._discard(session.id)
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                "the upload's stored bytes were lost; start the upload again",
            ) from None
        except Exception:
            self.metadata.release_upload(session.id, session.offset, session.hash_state, now)
            raise
        hasher = resume_hasher(session.algorithm, session.hash_state)
        expected = content_range.length if content_range is not None else None
        return Append(self, session, writer, hasher, expected)

    def complete(self, session: UploadSession, digest: Digest) -> None:
        """Verify the whole upload against ``digest`` and publish it as a blob of the repository.

        On a mismatch the upload is discarded (nothing is stored) and DIGEST_INVALID raised."""
        if digest.algorithm == session.algorithm:
            actual = resume_hasher(session.algorithm, session.hash_state).finalize()
        else:
            actual = self._rehash(session, digest.algorithm)
        if actual != digest.encoded:
            self._discard(session.id)
            raise _digest_mismatch(digest)
        self.blobs.commit_upload(session.id, digest, session.offset)
        self.metadata.complete_upload(session.id, session.repository, str(digest), session.offset)

    def _rehash(self, session: UploadSession, algorithm: str) -> str:
        # The client declared a different algorithm at the end than at the start: read the
        # upload back once. Rare (clients that want sha512 say so with ?digest-algorithm=).
        hasher = new_hasher(algorithm)
        for chunk in self.blobs.read_upload(session.id, session.offset):
            hasher.update(chunk)
        return hasher.finalize()

    def cancel(self, repository: str, upload_id: str) -> None:
        session = self._get(repository, upload_id)
        self._discard(session.id)

    def _discard(self, upload_id: str) -> None:
        self.metadata.delete_upload(upload_id)
        self.blobs.abort_upload(upload_id)

    def mount(self, repository: str, digest: Digest, source: str) -> bool:
        """Link ``digest`` from ``source`` into ``repository``; False if the source lacks it."""
        size = self.metadata.linked_blob_size(source, str(digest))
        if size is None or self.blobs.stat(digest) is None:
            return False
        self.metadata.link_blob(repository, str(digest), size)
        return True

    def expire(self) -> int:
        """Remove sessions idle for longer than the expiry, and upload bytes that no session
        owns (left by a crash during a monolithic upload); returns how many sessions."""
        cutoff = self.clock() - self.expiry_seconds
        expired = self.metadata.expired_uploads(cutoff)
        for session in expired:
            self._discard(session.id)
        for upload_id in self.blobs.stale_uploads(cutoff):
            if not _UPLOAD_ID.match(upload_id) or not self.metadata.upload_exists(upload_id):
                self.blobs.abort_upload(upload_id)
        return len(expired)
