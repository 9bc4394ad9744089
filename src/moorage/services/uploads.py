"""Blob uploads: sessions, chunked appends, verification and publication, cross-repo mounts.

A new session lives in its id alone (services/upload_ids.py): opening one writes nothing. Once
a request adds bytes, its state (offset and serialised hash state) lives in the metadata store,
so any worker or node can take the next request and a session survives a restart. A PUT that
brings the whole blob to a session with no bytes yet skips the session row altogether, and so
does a small first PATCH on a store that keeps an upload's bytes under its id alone (the
filesystem): its id and its file are the session until a second request needs a row. Bytes are
hashed while they are written; the digest is checked before the blob is published, and a blob
is linked to the repository only after its bytes are durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.port import MetadataStore, UploadBusy
from moorage.metadata.records import UploadSession
from moorage.oci.digest import DEFAULT_ALGORITHM, Digest, check_algorithm
from moorage.oci.ranges import ByteRange
from moorage.services.blobs import collected_meanwhile, confirm_stored, find_linked
from moorage.services.hashing import new_hasher, resume_hasher
from moorage.services.leases import LeaseLost, LeaseRenewer, UploadLease
from moorage.services.liveness import BEAT_EVERY, PROCESS, Liveness
from moorage.services.upload_ids import UploadIds
from moorage.storage.port import (
    BlobNotFound,
    BlobStore,
    StorageUnavailable,
    UploadTruncated,
    UploadWriter,
)

log = logging.getLogger("moorage.uploads")

# Signed ids (64 hex), and the random ids (32 hex) of sessions opened by older versions.
_UPLOAD_ID = re.compile(r"[a-f0-9]{32}|[a-f0-9]{64}")
_SIGNED_ID_LENGTH = 64

# A request holds a lease on its session from claim to its last update (see services/leases.py);
# a crashed worker's lease runs out after LEASE_SECONDS, a live one is renewed every
# LEASE_RENEW_EVERY seconds.
LEASE_SECONDS = 60.0
LEASE_RENEW_EVERY = 15.0
# A session held by a process on another host that may have died is looked at again this
# often, for up to the node timeout (services/liveness.py), before the client is told 429.
JUDGE_EVERY = 0.25


def _unknown_upload(upload_id: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:64]})


def _bytes_lost() -> RegistryError:
    return RegistryError(
        ErrorCode.BLOB_UPLOAD_INVALID,
        "the upload's stored bytes were lost; start the upload again",
    )


@dataclass(frozen=True, slots=True)
class Published:
    """Where a completed upload's blob is (its location, None: the digest's own place), and
    whether this upload's bytes are it (else an equal blob stored before is)."""

    location: str | None
    ours: bool


class ByteSink(Protocol):
    """Where a request body goes: ``write`` each piece, then ``abort`` on failure."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


class Append:
    """One request's hold on an upload session and the bytes it adds. Use :meth:`write` for
    each piece of the body, then exactly one of :meth:`finish` (PATCH: record progress),
    :meth:`complete` (PUT: verify and publish) or :meth:`abort`. The session's lease is held
    from the claim until then, so no other request can write, publish or complete it."""

    def __init__(
        self,
        uploads: UploadService,
        session: UploadSession,
        lease: UploadLease,
        expected_length: int | None,
        claim: str,
    ) -> None:
        self._uploads = uploads
        self.session = session
        self._lease = lease
        # Names this request's append in the store and, once recorded, in the session's
        # ``appends`` (storage/segments.py): bytes of a displaced holder are never read.
        self._claim = claim
        self._appended = False
        self._hasher = resume_hasher(session.algorithm, session.hash_state)
        self._expected_length = expected_length
        # Opened on the first byte: a PUT without a body never needs the upload file open.
        self._writer: UploadWriter | None = None
        self.written = 0

    def write(self, data: bytes) -> None:
        self._renew()
        writer = self._writer or self._open()
        self._hasher.update(data)
        writer.write(data)
        self.written += len(data)

    def take(self, data: bytes) -> None:
        """:meth:`write` a whole body already in memory, aborting on failure."""
        try:
            self.write(data)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> UploadSession:
        """Make the bytes durable, then record the new offset and hash state and give the lease
        up (in that order: the recorded offset never runs ahead of the bytes on disk)."""
        try:
            self._close()
        except BaseException:
            self.abort()
            raise
        offset = self.session.offset + self.written
        state = self._hasher.serialize()
        now = self._uploads.clock()
        claim = self._claim if self._appended else None
        self._end(
            lambda token: self._uploads.metadata.release_upload(
                self.session.id, token, offset, state, now, claim
            )
        )
        return replace(self.session, offset=offset, hash_state=state, updated_at=now)

    def complete(self, digest: Digest) -> None:
        """Verify the whole upload against ``digest``, publish it and link it to the
        repository, all under the lease. On a mismatch the upload is discarded (nothing is
        stored) and DIGEST_INVALID raised."""
        session, uploads = self.session, self._uploads
        size = session.offset + self.written
        try:
            if self._writer is None and session.offset == 0:  # an empty blob: nothing written
                self._open()
            self._close()
            appends = self._counted()
            if digest.algorithm == session.algorithm:
                actual = self._hasher.finalize()
            else:
                actual = uploads._rehash(session.id, size, digest.algorithm, appends)
            if actual != digest.encoded:
                uploads._discard_held(self._lease)
                raise _digest_mismatch(digest)
            self._renew()  # publishing under an expired lease could race a new holder
            proven = digest.algorithm == session.algorithm
            published = uploads._publish(self._lease, digest, size, proven, appends)
        except BaseException:
            self.abort()  # unless the session was discarded: back to where it was, unlocked
            raise
        self._end(
            lambda token: uploads.metadata.complete_upload(
                session.id, token, session.repository, str(digest), size, published.location
            )
        )
        if published.ours and published.location is not None:
            try:
                uploads._settle(session.repository, digest, size, published.location)
            except StorageUnavailable as error:
                # The blob is recorded and served; a failure here costs at most an unreferenced
                # copy, never the client's push (its session is already gone: no retry).
                log.warning("could not settle the location of %s: %s", digest, error)
        if not confirm_stored(uploads.metadata, uploads.blobs, digest):
            raise collected_meanwhile(digest)

    def abort(self) -> None:
        """Drop this request's bytes; the session stays where it was before."""
        if self._writer is not None:
            if self._lease.lost:  # the file is someone else's now: leave their bytes alone
                self._writer.close()
            else:
                self._writer.discard()
            self._writer = None
        s, uploads = self.session, self._uploads
        uploads.renewer.drop(self._lease)
        with contextlib.suppress(LeaseLost):
            self._lease.end(
                lambda token: uploads.metadata.release_upload(
                    s.id, token, s.offset, s.hash_state, uploads.clock()
                )
            )

    def _open(self) -> UploadWriter:
        self._writer = self._uploads._open_writer(self.session, self._lease, self._claim)
        self._appended = True
        return self._writer

    def _counted(self) -> tuple[str, ...] | None:
        """The claims whose appends form the upload: the recorded ones, and this one's."""
        recorded = self.session.appends
        if recorded is None or not self._appended:
            return recorded
        return (*recorded, self._claim)

    def _renew(self) -> None:
        try:
            self._lease.renew()
        except LeaseLost:
            raise self._uploads._lost(self.session.id) from None

    def _close(self) -> None:
        if self._expected_length is not None and self.written != self._expected_length:
            raise RegistryError(
                ErrorCode.SIZE_INVALID,
                "chunk length does not match Content-Range",
                {"expected": self._expected_length, "received": self.written},
            )
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _end(self, update: Callable[[float], bool]) -> None:
        self._uploads.renewer.drop(self._lease)
        try:
            self._lease.end(update)
        except LeaseLost:
            raise self._uploads._lost(self.session.id) from None


class WholeBlob:
    """A blob pushed in one request (``POST ?digest=``, or a PUT with the whole body on a
    session with no bytes yet): no session state in the database, just hash while writing,
    verify, publish and link (and end the session, ``ending``, in that same transaction). When
    the blob is already stored the bytes are only hashed (the client must still prove it has
    them), never written again."""

    def __init__(
        self,
        uploads: UploadService,
        repository: str,
        digest: Digest,
        ending: UploadSession | None = None,
    ) -> None:
        self._uploads = uploads
        self._repository = repository
        self._digest = digest
        self._ending = ending
        # hashlib, not a resumable hasher: nothing is resumed here, and hashlib releases the
        # GIL while it hashes, so receiving the next bytes overlaps with hashing these.
        self._hasher = hashlib.new(digest.algorithm)
        self._upload_id = uuid.uuid4().hex
        stored = uploads.stored(digest)[0] is not None
        self._writer: UploadWriter | None = None
        # Written in place (published by close() once verified), or staged as an upload.
        self._direct = False
        if not stored:
            self._writer = uploads.blobs.open_blob(digest)
            self._direct = self._writer is not None
            if self._writer is None:
                self._writer = uploads.blobs.open_upload(self._upload_id, 0)
        self.written = 0

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        if self._writer is not None:
            self._writer.write(data)
        self.written += len(data)

    def finish(self) -> None:
        metadata, repository, digest = self._uploads.metadata, self._repository, str(self._digest)
        if self._hasher.hexdigest() != self._digest.encoded:
            self.abort()
            if self._ending is not None:  # as a session's PUT does: the session is discarded
                metadata.end_upload(self._ending)
            raise _digest_mismatch(self._digest)
        ending = self._ending
        if self._writer is None:  # already stored
            metadata.link_blob(repository, digest, self.written, ending)
        else:
            self._writer.close()
            location = None
            if not self._direct:
                try:
                    location = self._uploads.blobs.commit_upload(
                        self._upload_id, self._digest, self.written
                    )
                except BlobNotFound:  # swept away while the client sent nothing for a day
                    raise _bytes_lost() from None
            metadata.store_blob(repository, digest, self.written, location, ending)
        # Both ways the bytes were in place before the link: the collector may have removed
        # them in between (the digest was garbage a moment ago).
        if not confirm_stored(metadata, self._uploads.blobs, self._digest):
            raise collected_meanwhile(self._digest)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.discard()
            if not self._direct:
                self._uploads.blobs.abort_upload(self._upload_id)


def _out_of_order(message: str, offset: int) -> RegistryError:
    return RegistryError(ErrorCode.RANGE_INVALID, message, {"offset": offset})


def _busy(offset: int) -> RegistryError:
    # 429 with Retry-After, not 416: the client's offset may be right, the session is just
    # taken for now (clients retry a 429; a 416 tells them their offset is wrong).
    return RegistryError(
        ErrorCode.TOOMANYREQUESTS,
        "another request is writing to this upload; retry when it ends",
        {"offset": offset},
        headers={"Retry-After": "1"},
    )


def _digest_mismatch(digest: Digest) -> RegistryError:
    return RegistryError(
        ErrorCode.DIGEST_INVALID,
        "uploaded content does not match the digest",
        {"digest": str(digest)},
    )


def _empty_session(
    upload_id: str, repository: str, algorithm: str, created_at: float
) -> UploadSession:
    return UploadSession(
        id=upload_id,
        repository=repository,
        algorithm=algorithm,
        offset=0,
        hash_state=new_hasher(algorithm).serialize(),
        created_at=created_at,
        updated_at=created_at,
    )


class UploadService:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        expiry_seconds: float,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
        renew_every: float = LEASE_RENEW_EVERY,
        liveness: Liveness = PROCESS,
        ids: UploadIds | None = None,
    ) -> None:
        """``ids``: signs and checks upload ids; every worker and node of one registry must
        be given the same key (app.py derives it from the token signing key)."""
        self.metadata = metadata
        self.blobs = blobs
        self.expiry_seconds = expiry_seconds
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.liveness = liveness
        # A holder elsewhere is only presumed dead, and may still write: its session is taken
        # over early only where its late bytes cannot become the upload's (storage/port.py).
        self._remote_takeover = blobs.separate_appends
        # A store that appends in place to one file per upload finds a session's bytes by its
        # id alone: a small first PATCH then stores its bytes and nothing else (patch_fresh),
        # and whoever takes the session next reads its state back from that file
        # (_resumed_from_file). A store that keeps appends apart needs the row to know which
        # appends count, so there the first PATCH creates it.
        self._first_patch_in_file = not blobs.separate_appends
        self.renewer = LeaseRenewer(renew_every)
        self.ids = ids or UploadIds()

    def start(self, repository: str, algorithm: str | None = None) -> UploadSession:
        """Open a new upload session for ``repository``: its id is all there is of it until
        a request brings bytes, so this stores nothing."""
        algorithm = check_algorithm(algorithm) if algorithm else DEFAULT_ALGORITHM
        now = self.clock()
        return _empty_session(
            self.ids.issue(repository, algorithm, now), repository, algorithm, now
        )

    def _opened(self, repository: str, upload_id: str) -> UploadSession | None:
        """The empty session a signed ``upload_id`` stands for, unless it expired (or is not
        ours, or not for ``repository``). Whether it has a row since is for the caller to ask."""
        opened = self.ids.check(upload_id, repository)
        if opened is None or opened.created_at < self.clock() - self.expiry_seconds:
            return None
        return _empty_session(upload_id, repository, opened.algorithm, opened.created_at)

    def _fresh(self, repository: str, upload_id: str) -> UploadSession | None:
        """The session ``upload_id`` stands for while it has no row: signed, not expired, no
        request created its row nor ended it. None otherwise. Its offset is 0 here; a first
        PATCH may have stored bytes in its file since (:meth:`_resumed_from_file`)."""
        opened = self._opened(repository, upload_id)
        if opened is None or self.metadata.get_upload(repository, upload_id) is not None:
            return None
        return opened

    def _first_patch_size(self, upload_id: str) -> int | None:
        """How many bytes a first PATCH stored in the file of a session with no row (None: it
        has no file), on a store where such a PATCH stores nothing else."""
        if not self._first_patch_in_file:
            return None
        return self.blobs.upload_size(upload_id)

    def _resumed_from_file(self, fresh: UploadSession) -> UploadSession:
        """A session with no row, as its file left it: offset and hash state of the bytes a
        first PATCH stored there (read back and hashed once, at most one small chunk), or
        ``fresh`` unchanged when there are none."""
        size = self._first_patch_size(fresh.id)
        if not size:
            return fresh
        hasher = new_hasher(fresh.algorithm)
        try:
            for chunk in self.blobs.read_upload(fresh.id, size):
                hasher.update(chunk)
        except BlobNotFound:  # completed or cancelled meanwhile: nothing to resume
            return fresh
        return replace(fresh, offset=size, hash_state=hasher.serialize())

    def begin_whole(self, repository: str, digest: Digest) -> WholeBlob:
        """Receive a whole blob in one request (monolithic upload)."""
        return WholeBlob(self, repository, digest)

    def put_whole(self, repository: str, digest: Digest, data: bytes) -> None:
        """A small monolithic upload already in memory, in one call."""
        whole = WholeBlob(self, repository, digest)
        whole.write(data)
        whole.finish()

    def begin_fresh(self, repository: str, upload_id: str, digest: Digest) -> WholeBlob | None:
        """A PUT with the whole blob on a session that has no bytes yet (POST then PUT, as
        most clients push a small blob): received as a monolithic upload, the session ended in
        the blob's own transaction; no session row, no lease. None when the session has a row
        (bytes, or it ended): the caller then takes the session's way (:meth:`begin_append`)."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            return None
        session = self._fresh(repository, upload_id)
        if session is None or self._first_patch_size(upload_id) is not None:
            return None
        # A request racing this one on the same id (a PATCH creating the row meanwhile) is
        # harmless: this blob is verified whole, and ending the session fences the other.
        return WholeBlob(self, repository, digest, ending=session)

    def put_fresh(self, repository: str, upload_id: str, digest: Digest, data: bytes) -> bool:
        """:meth:`begin_fresh` for a small body already in memory, in one call; False (nothing
        done) when the session is not fresh."""
        whole = self.begin_fresh(repository, upload_id, digest)
        if whole is None:
            return False
        whole.write(data)
        whole.finish()
        return True

    def append_small(
        self, repository: str, upload_id: str, content_range: ByteRange | None, data: bytes
    ) -> UploadSession:
        """A PATCH whose whole body (small) is in memory, in one call: a fresh session's first
        bytes by :meth:`patch_fresh`, any other chunk as :meth:`begin_append` takes it."""
        session = self.patch_fresh(repository, upload_id, content_range, data)
        if session is not None:
            return session
        append = self.begin_append(repository, upload_id, content_range)
        append.take(data)
        return append.finish()

    def patch_fresh(
        self, repository: str, upload_id: str, content_range: ByteRange | None, data: bytes
    ) -> UploadSession | None:
        """The first bytes of a session that lives in its id alone, with no lease: the store
        takes the bytes whole or not at all, and only where nobody wrote yet
        (``BlobStore.create_upload``, which makes them durable). On the filesystem that is
        all: the id and the file are the session (no transaction at all), until a request
        that goes on with it reads its state back from the file. Elsewhere the session's row
        is then created with their offset and hash state, held by nobody, in one durable
        transaction. None when the session is not fresh (or the chunk is not its start), or
        another request got to it first: nothing of the session changed, and the caller
        takes :meth:`begin_append`'s way, which answers such a chunk 416 or 429 as any
        other."""
        if not data or not _UPLOAD_ID.fullmatch(upload_id):
            return None
        if content_range is not None and (
            content_range.first != 0 or content_range.length != len(data)
        ):
            return None
        opened = self._fresh(repository, upload_id)
        if opened is None:
            return None
        claim = uuid.uuid4().hex[:16]
        if not self.blobs.create_upload(upload_id, claim, data):
            return None
        hasher = new_hasher(opened.algorithm)
        hasher.update(data)
        session = replace(
            opened,
            offset=len(data),
            hash_state=hasher.serialize(),
            updated_at=self.clock(),
            appends=(claim,),
        )
        if self._first_patch_in_file:
            # A request that took the session while this one stored its bytes (a client racing
            # itself) may replace them: told to retry instead of 202. Its own check after
            # creating the row is the other half (begin_append).
            if self.metadata.get_upload(repository, upload_id) is not None:
                return None
            return session
        # Lost to a request that created the row meanwhile: the bytes stored above are then
        # that request's to keep or cut (it truncates to its own offset); they never count.
        if not self.metadata.create_upload(session, durable=True):
            return None
        return session

    def complete_small(self, repository: str, upload_id: str, digest: Digest) -> None:
        """A PUT ?digest= without a body: by :meth:`complete_first_patch` or
        :meth:`complete_unheld` when it can, else under a lease as any PUT."""
        if self.complete_first_patch(repository, upload_id, digest):
            return
        if not self.complete_unheld(repository, upload_id, digest):
            self.begin_append(repository, upload_id, None).complete(digest)

    def complete_first_patch(self, repository: str, upload_id: str, digest: Digest) -> bool:
        """Complete a session whose bytes are its first PATCH's alone, still only in the
        session's file (no row: :meth:`patch_fresh`), in one transaction: the file gets a
        second name (``BlobStore.link_upload``), whose bytes are verified against ``digest``
        and published under it (a rename into ``blobs/``: the bytes were synced by that
        PATCH), then the blob is linked and the session ended in one transaction, and the
        session's file removed.

        A request that takes the session (creates its row) and appends copies the file first
        once it has another name, and the row is looked for only after the link is made: so
        either that request's row is seen here and the ordinary way answers this PUT (429),
        or it comes later and appends to a copy, never to the published bytes. Ending the
        session fences that request. False, nothing done, when the session has a row or no
        such file."""
        if not self._first_patch_in_file or not _UPLOAD_ID.fullmatch(upload_id):
            return False
        session = self._fresh(repository, upload_id)
        size = self._first_patch_size(upload_id) if session is not None else None
        if session is None or not size:
            return False
        snapshot = self.blobs.link_upload(upload_id)
        if snapshot is None:
            return False
        try:
            if self.metadata.get_upload(repository, upload_id) is not None:
                return False
            if self._rehash(snapshot, size, digest.algorithm, None) != digest.encoded:
                self.metadata.end_upload(session)
                self.blobs.abort_upload(upload_id)
                raise _digest_mismatch(digest)
            if self.stored(digest)[0] == size:  # an equal blob stored before: linked only
                self.metadata.link_blob(repository, str(digest), size, session)
            else:
                self.blobs.commit_upload(snapshot, digest, size)
                self.metadata.store_blob(repository, str(digest), size, None, session)
        finally:
            self.blobs.abort_upload(snapshot)  # gone already once published
        self.blobs.abort_upload(upload_id)
        if not confirm_stored(self.metadata, self.blobs, digest):
            raise collected_meanwhile(digest)
        return True

    def complete_unheld(self, repository: str, upload_id: str, digest: Digest) -> bool:
        """Complete a session that no request holds in one transaction, without a lease of its
        own: verified from its recorded hash state, then published and linked with the claim
        folded into the blob's transaction (``MetadataStore.complete_unleased``). Only where
        publishing is a local rename, cheap enough to run in that transaction. False, nothing
        done, when this is not that case (the session is held or changed meanwhile, is empty,
        is unknown, was hashed with another algorithm, fails the digest, or its bytes are
        missing): :meth:`begin_append`'s way then handles it, and every error is its to give."""
        if not self.blobs.publishes_locally or not _UPLOAD_ID.fullmatch(upload_id):
            return False
        session = self.metadata.get_upload(repository, upload_id)
        if (
            session is None
            or session.offset <= 0
            or session.algorithm != digest.algorithm
            or resume_hasher(session.algorithm, session.hash_state).finalize() != digest.encoded
        ):
            return False
        size = session.offset
        # An equal blob stored before (or by an earlier try of this PUT that published and
        # stopped before its commit): linked, and the upload's bytes dropped.
        stored = self.stored(digest)[0] == size

        def publish() -> None:
            if not stored:
                self.blobs.commit_upload(upload_id, digest, size, session.appends)

        try:
            if not self.metadata.complete_unleased(session, str(digest), size, publish):
                return False
        except (UploadTruncated, BlobNotFound):
            return False
        if stored:
            self.blobs.abort_upload(upload_id)
        if not confirm_stored(self.metadata, self.blobs, digest):
            raise collected_meanwhile(digest)
        return True

    def status(self, repository: str, upload_id: str) -> UploadSession:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise _unknown_upload(upload_id)
        session = self.metadata.get_upload(repository, upload_id)
        if session is None:
            session = self._opened(repository, upload_id)
            if session is not None:
                session = self._resumed_from_file(session)
        if session is None or session.ended:
            raise _unknown_upload(upload_id)
        return session

    def begin_append(
        self, repository: str, upload_id: str, content_range: ByteRange | None
    ) -> Append:
        """Claim the session for one request's bytes.

        With ``content_range`` the chunk must start where the upload ends, else 416
        RANGE_INVALID with the recorded offset in the error's detail, for the progress
        headers. While another live request holds the session the answer is 429 (retry
        later); a session whose holder died (a killed worker, a restarted server) is taken
        over at once. A holder on another host is presumed dead once its beats stop
        (services/liveness.py): the request waits for that, up to the node timeout, rather
        than answer 429 to a client whose node just died (on stores that keep appends apart
        only: see ``BlobStore.separate_appends``)."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise _unknown_upload(upload_id)
        now = self.clock()
        session = None
        opened = self._fresh(repository, upload_id)
        if opened is not None:
            # A session that lived in its id (and maybe a first PATCH's file) alone so far: its
            # row, created already held by this request, in one transaction. If another
            # request created it first (or ended it) meanwhile, it is claimed as any other
            # below.
            opened = replace(self._resumed_from_file(opened), updated_at=now)
            deadline = now + self.lease_seconds
            # Durable when it takes over a first PATCH's bytes: from then on the row, not the
            # file's size, says where the session is (bytes a cut append leaves past it are
            # dropped), and a row lost to a power failure would count them.
            taken_over = opened.offset > 0
            holder = self.liveness.current()
            if self.metadata.create_upload(opened, deadline, holder, durable=taken_over):
                session = opened
                if (self._first_patch_size(upload_id) or 0) != opened.offset:
                    # A first PATCH stored bytes since they were read (the client races
                    # itself): this row would hide them. It is told to retry (patch_fresh
                    # sees this row), and so is this request, with the session unheld.
                    self.metadata.release_upload(
                        upload_id, deadline, opened.offset, opened.hash_state, now
                    )
                    raise _busy(opened.offset)
        if session is None:
            session, deadline = self._claim(repository, upload_id)
            now = self.clock()
        if session is None:
            raise _unknown_upload(upload_id)
        lease = UploadLease(self.metadata, upload_id, deadline, self.lease_seconds, self.clock)
        if content_range is not None and content_range.first != session.offset:
            lease.end(
                lambda token: self.metadata.release_upload(
                    upload_id, token, session.offset, session.hash_state, now
                )
            )
            raise _out_of_order(f"chunk must start at offset {session.offset}", session.offset)
        self.renewer.hold(lease)
        expected = content_range.length if content_range is not None else None
        return Append(self, session, lease, expected, uuid.uuid4().hex[:16])

    def _claim(self, repository: str, upload_id: str) -> tuple[UploadSession | None, float]:
        """Claim the session (None: there is none) and the lease's deadline; 429 while a live
        request holds it. A holder on another host that stopped beating is looked at again
        until it is presumed dead or one node timeout has passed."""
        give_up: float | None = None
        while True:
            try:
                return self._claim_once(repository, upload_id)
            except UploadBusy as busy:
                if not (self._remote_takeover and self.liveness.may_be_judged(busy.holder)):
                    raise _busy(busy.offset) from None
                if give_up is None:
                    give_up = time.monotonic() + self.liveness.timeout + 2 * BEAT_EVERY
                if time.monotonic() >= give_up:
                    raise _busy(busy.offset) from None
                time.sleep(JUDGE_EVERY)

    def _claim_once(self, repository: str, upload_id: str) -> tuple[UploadSession | None, float]:
        now = self.clock()
        deadline = now + self.lease_seconds
        holder = self.liveness.current()
        try:
            return self.metadata.claim_upload(
                repository, upload_id, now, deadline, holder
            ), deadline
        except UploadBusy as busy:
            if not self._is_dead(busy.holder):
                raise
            # The new deadline is the fencing token and must differ from the dead one's.
            deadline = max(deadline, busy.token + 1.0)
            # UploadBusy again: another request took it over first.
            session = self.metadata.claim_upload(
                repository, upload_id, now, deadline, holder, replacing=busy.token
            )
            log.info("upload %s taken over from a dead holder %s", upload_id, busy.holder)
            return session, deadline

    def _is_dead(self, holder: str | None) -> bool:
        if self._remote_takeover:
            return self.liveness.is_dead(holder)
        return self.liveness.is_dead_here(holder)

    def _open_writer(self, session: UploadSession, lease: UploadLease, claim: str) -> UploadWriter:
        try:
            return self.blobs.open_upload(session.id, session.offset, claim, session.appends)
        except (UploadTruncated, BlobNotFound):
            self._discard_held(lease)
            raise _bytes_lost() from None

    def _rehash(
        self, upload_id: str, size: int, algorithm: str, appends: tuple[str, ...] | None
    ) -> str:
        # The client declared a different algorithm at the end than at the start: read the
        # upload back once. Rare (clients that want sha512 say so with ?digest-algorithm=).
        hasher = new_hasher(algorithm)
        try:
            for chunk in self.blobs.read_upload(upload_id, size, appends):
                hasher.update(chunk)
        except BlobNotFound:
            raise _bytes_lost() from None
        return hasher.finalize()

    def stored(self, digest: Digest) -> tuple[int | None, str | None]:
        """The size of blob ``digest`` if the store has it (else None), and its location."""
        record = self.metadata.blob(str(digest))
        location = record.location if record is not None else None
        return self.blobs.stat(digest, location), location

    def _publish(
        self,
        lease: UploadLease,
        digest: Digest,
        size: int,
        proven: bool,
        appends: tuple[str, ...] | None,
    ) -> Published:
        """Make the verified upload blob ``digest``; returns where the blob is.

        A blob already stored is kept and the upload's bytes dropped: a layer pushed again
        costs no second copy in the store.

        ``proven``: the session's own hash state matched ``digest``. If the upload is gone but
        the blob is stored with its size, an earlier PUT of this session published it and
        stopped (crash, cut connection) before its database commit: finishing is then correct.
        Without that proof the stored blob may be someone else's, and is not linked."""
        stored_size, location = self.stored(digest)
        if stored_size == size:
            self.blobs.abort_upload(lease.upload_id)
            return Published(location, ours=False)
        try:
            location = self.blobs.commit_upload(lease.upload_id, digest, size, appends)
            return Published(location, ours=True)
        except UploadTruncated:
            self._discard_held(lease)
            raise _bytes_lost() from None
        except BlobNotFound:
            stored_size, location = self.stored(digest)
            if proven and stored_size == size:
                return Published(location, ours=False)
            self._discard_held(lease)
            raise _unknown_upload(lease.upload_id) from None

    def _settle(self, repository: str, digest: Digest, size: int, location: str) -> None:
        """After an upload published in place was recorded: if another upload of the same
        blob was recorded first (two pushes finishing at once), keep that one and drop ours,
        which nobody can be reading; if the recorded one's bytes are gone, ours replace it."""
        record = self.metadata.blob(str(digest))
        if record is None or record.location == location:
            return
        if self.blobs.stat(digest, record.location) is not None:
            self.blobs.delete(digest, location)
        else:
            self.metadata.store_blob(repository, str(digest), size, location)

    def _lost(self, upload_id: str) -> RegistryError:
        """The error for a request whose lease ran out under it."""
        if not self.metadata.upload_exists(upload_id):
            return _unknown_upload(upload_id)
        return RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            "another request took this upload over; ask for its status and continue from there",
        )

    def cancel(self, repository: str, upload_id: str) -> None:
        """End the session at the client's request, even while another request writes to it
        (that request then fails with BLOB_UPLOAD_UNKNOWN)."""
        session = self.status(repository, upload_id)
        self.metadata.end_upload(session)
        self.blobs.abort_upload(session.id)

    def _discard_held(self, lease: UploadLease) -> None:
        """Discard the session this request holds; someone else's session is left alone."""
        self.renewer.drop(lease)
        with contextlib.suppress(LeaseLost):
            lease.end(lambda token: self.metadata.discard_upload(lease.upload_id, token))
            self.blobs.abort_upload(lease.upload_id)

    def mount(self, repository: str, digest: Digest, source: str) -> bool:
        """Link ``digest`` from ``source`` into ``repository``; False if the source lacks it."""
        info = find_linked(self.metadata, self.blobs, source, digest)
        if info is None:
            return False
        self.metadata.link_blob(repository, str(digest), info.size)
        # The source's link may have been collected, and the blob with it, since the lookup:
        # then this is no mount (the client uploads the blob instead).
        return confirm_stored(self.metadata, self.blobs, digest)

    def expire(self) -> int:
        """Remove sessions idle for longer than the expiry (never one a request holds), and
        upload bytes that no session owns (left by a crash during a monolithic upload);
        returns how many sessions."""
        now = self.clock()
        cutoff = now - self.expiry_seconds
        expired = self.metadata.expire_uploads(cutoff, now)
        for upload_id in expired:
            self.blobs.abort_upload(upload_id)
        abandoned_first_patches = 0
        for upload_id in self.blobs.stale_uploads(cutoff):
            if not _UPLOAD_ID.fullmatch(upload_id) or not self.metadata.upload_exists(upload_id):
                self.blobs.abort_upload(upload_id)
                # A signed id's file with no live row: a session its first PATCH left in its
                # file alone (patch_fresh), abandoned (its id is as old as the file or older).
                abandoned_first_patches += len(upload_id) == _SIGNED_ID_LENGTH
        return len(expired) + abandoned_first_patches
