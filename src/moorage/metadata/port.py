"""The ``MetadataStore`` port: the database is the source of truth for names.

All methods are synchronous and each is one transaction. Digests are passed as their canonical
strings. Methods that take a repository name never create the repository unless they say so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from moorage.metadata.records import (
    BlobRecord,
    Inventory,
    ManifestRecord,
    ManifestReferences,
    ReferrerRecord,
    UploadSession,
)
from moorage.metadata.usage import Quota


class UploadBusy(Exception):
    """Another request holds the upload session right now; ``offset`` is its recorded end,
    ``token`` the lease it holds and ``holder`` the process that holds it (None if unknown)."""

    def __init__(self, offset: int, token: float, holder: str | None) -> None:
        super().__init__(offset)
        self.offset = offset
        self.token = token
        self.holder = holder


class TagTaken(Exception):
    """Tags that already name another manifest, where tags may be created but not moved."""

    def __init__(self, tags: list[str]) -> None:
        super().__init__(tags)
        self.tags = tags


class MetadataStore(Protocol):
    # --- blobs -----------------------------------------------------------------------------
    def link_blob(
        self, repository: str, digest: str, size: int, ending: UploadSession | None = None
    ) -> None:
        """Record that blob ``digest`` exists and belongs to ``repository`` (created if new,
        at its digest's own place). Idempotent. ``ending``: an upload session this completes,
        ended in the same transaction (:meth:`end_upload`)."""

    def store_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        location: str | None,
        ending: UploadSession | None = None,
    ) -> None:
        """Like :meth:`link_blob`, for bytes just written: the blob is now at ``location``
        (None: its digest's own place), also when it was recorded elsewhere before."""

    def blob(self, digest: str) -> BlobRecord | None:
        """The blob, whatever repositories it belongs to, or None."""

    def linked_blob(self, repository: str, digest: str) -> BlobRecord | None:
        """The blob if it is linked to ``repository``, else None."""

    def blob_sizes(self, repository: str, digests: Collection[str]) -> dict[str, int]:
        """The recorded size of each of ``digests`` linked to ``repository``; digests it does
        not have are left out."""

    def unlink_blob(self, repository: str, digest: str) -> bool:
        """Remove the link; False if there was none."""

    # --- manifests and tags ------------------------------------------------------------------
    def put_manifest(
        self,
        repository: str,
        manifest: ManifestRecord,
        references: ManifestReferences,
        tags: list[str],
        keep_tags: bool = False,
        quota: Quota | None = None,
    ) -> list[str]:
        """Store the manifest (idempotent by digest) and point ``tags`` at it, moving them
        from any manifest they named before; safe to run concurrently for the same manifest
        or tag. In the same transaction, checks that the repository has every referenced blob
        (except ``foreign_blobs``) and child manifest: if not, stores nothing and returns the
        missing digests (sorted), else returns [].

        ``keep_tags`` (immutable tags): a tag may be created, or set again to the manifest it
        names, but not moved; if one would move, stores nothing and raises :class:`TagTaken`.
        Decided in the transaction that writes the tags, so a concurrent push cannot slip a
        tag in between the check and the write.

        ``quota``: the repository's limits; if this push would exceed one, stores nothing and
        raises :class:`~moorage.metadata.usage.QuotaExceeded`, decided in the same transaction
        (pushes to one quota-limited repository take turns on it)."""

    def get_manifest(
        self, repository: str, reference: str, by_digest: bool
    ) -> ManifestRecord | None:
        """The manifest a tag or digest names in ``repository``, or None."""

    def manifest_sizes(self, repository: str, digests: Collection[str]) -> dict[str, int]:
        """The length in bytes of each of ``digests`` stored as a manifest in ``repository``;
        digests it does not have are left out."""

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete the manifest and every tag on it; False if it did not exist."""

    def delete_tag(self, repository: str, tag: str) -> bool:
        """Delete only the tag; False if it did not exist."""

    def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        """Tags in lexical order after ``last``; None if the repository is unknown."""

    def list_repositories(self, limit: int, last: str | None) -> list[str]:
        """Repository names in lexical order after ``last``."""

    def referrers(
        self, repository: str, subject: str, artifact_type: str | None, limit: int, last: str | None
    ) -> list[ReferrerRecord]:
        """Manifests in ``repository`` whose subject is ``subject``, optionally filtered by
        artifact type, in digest order after ``last``."""

    # --- upload sessions ---------------------------------------------------------------------
    def create_upload(
        self,
        session: UploadSession,
        until: float | None = None,
        holder: str | None = None,
        *,
        durable: bool = False,
    ) -> bool:
        """Record a new session, already claimed by ``holder`` until ``until`` when given (the
        first PATCH or PUT of a session whose id carried it so far); False, changing nothing,
        when a row with its id exists (another request created it first, or it ended).
        ``durable``: the row is a 202's promise (a first PATCH that stored its bytes first and
        records them with the row, unleased), not only a lease that a later commit makes
        durable."""

    def get_upload(self, repository: str, upload_id: str) -> UploadSession | None:
        """The session's row, an ended one included (``session.ended``); None if none."""

    def claim_upload(
        self,
        repository: str,
        upload_id: str,
        now: float,
        until: float,
        holder: str,
        replacing: float | None = None,
    ) -> UploadSession | None:
        """Take an exclusive lease on the session until ``until`` for ``holder``; None if it
        has no row or ended. Raises :class:`UploadBusy` while another holder's lease has not
        expired at ``now``, unless that lease is exactly ``replacing`` (a lease whose holder
        is known to be dead, taken over; ``until`` must then differ from it).

        ``until`` is the holder's fencing token: the methods below that take ``token`` change
        the session only while the stored lease is still exactly that one, and return False
        (changing nothing) once it expired and was claimed again, or the session is gone."""

    def extend_lease(self, upload_id: str, token: float, until: float) -> bool:
        """Move the lease held as ``token`` to ``until`` (the new token)."""

    def release_upload(
        self,
        upload_id: str,
        token: float,
        offset: int,
        hash_state: bytes,
        now: float,
        append: str | None = None,
    ) -> bool:
        """Record progress and drop the lease (pass the old offset and state to only unlock);
        ``append`` names the claim whose append this was, added to the session's ``appends``.
        Durable, as the caller's 202 promises; the caller makes the bytes durable first, so
        the record never runs ahead of them."""

    def complete_upload(
        self,
        upload_id: str,
        token: float,
        repository: str,
        digest: str,
        size: int,
        location: str | None,
    ) -> bool:
        """In one transaction: link the finished blob to the repository and end the session
        (its row stays, ended: see :meth:`end_upload`); nothing at all when the lease is not
        ``token``. With ``location=None`` (the bytes are
        at the digest's own place) this is :meth:`store_blob`; a location is recorded only if
        the blob has none yet (compare :meth:`blob` afterwards)."""

    def complete_unleased(
        self,
        session: UploadSession,
        digest: str,
        size: int,
        publish: Callable[[], None],
    ) -> bool:
        """:meth:`complete_upload` for a session that no request holds, with the claim folded
        into the same transaction: only if the session's row is still unleased at
        ``session.offset``, ``publish`` runs (it puts the blob's bytes at the digest's own
        place; an error from it rolls everything back), then the blob is linked and the
        session ended. False, changing nothing and publishing nothing, when the row changed
        or is held. While ``publish`` runs no request can claim the session."""

    def discard_upload(self, upload_id: str, token: float) -> bool:
        """End the session this holder owns."""

    def end_upload(self, session: UploadSession) -> None:
        """End the session whoever holds it (a client's cancel), with or without a row so far:
        its row is kept, ended, so that its still validly signed id is refused until it
        expires (then :meth:`expire_uploads` removes the row and the id is too old)."""

    def upload_exists(self, upload_id: str) -> bool:
        """Whether the session has a row and has not ended."""

    def expire_uploads(self, updated_before: float, now: float) -> list[str]:
        """Remove sessions last changed before ``updated_before`` that no unexpired lease
        holds at ``now`` (ended ones included); return the ids of those that had not ended
        (abandoned: their bytes are to be removed)."""

    def check(self) -> None:
        """Raise if the database is unreachable."""

    def inventory(self) -> Inventory:
        """Count repositories, manifests, tags and open upload sessions, and add up stored
        blob sizes. Each is a scan of its table: call it seldom (the metrics cache it)."""
