"""Reading and deleting blobs as a repository sees them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.port import MetadataStore
from moorage.oci.digest import Digest
from moorage.storage.port import BlobStore


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    # Where the blob store keeps it, for the store's reading methods (None: the digest's place).
    location: str | None = None


def _unknown(digest: Digest) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})


def find_linked(
    metadata: MetadataStore, blobs: BlobStore, repository: str, digest: Digest
) -> BlobInfo | None:
    """The blob if ``repository`` may use it: linked to it, and its bytes in storage."""
    record = metadata.linked_blob(repository, str(digest))
    if record is None or blobs.stat(digest, record.location) is None:
        return None
    return BlobInfo(digest, record.size, record.location)


def confirm_stored(metadata: MetadataStore, blobs: BlobStore, digest: Digest) -> bool:
    """After linking a blob whose bytes the caller found or wrote: are they still where the
    database now says? False when the garbage collector deleted them in between. It deletes a
    blob's bytes inside the transaction that deletes its row (holding the row), so a link
    committed after that transaction sees the loss here, and one committed before it kept the
    blob (the collector re-checks links under the lock). See docs/gc.md."""
    record = metadata.blob(str(digest))
    return record is not None and blobs.stat(digest, record.location) is not None


def collected_meanwhile(digest: Digest) -> RegistryError:
    """The error for a push whose blob the collector deleted as it was being linked: rare
    (the blob had been unreferenced for the grace period); pushing it again stores it anew."""
    return RegistryError(
        ErrorCode.BLOB_UPLOAD_INVALID,
        "the blob was removed by garbage collection while this upload finished; push it again",
        {"digest": str(digest)},
    )


class BlobService:
    def __init__(self, metadata: MetadataStore, blobs: BlobStore, delete_enabled: bool) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.delete_enabled = delete_enabled

    def stat(self, repository: str, digest: Digest) -> BlobInfo:
        """The blob if ``repository`` may serve it: linked to it and present in storage."""
        info = find_linked(self.metadata, self.blobs, repository, digest)
        if info is None:
            raise _unknown(digest)
        return info

    def redirect_url(self, info: BlobInfo) -> str | None:
        """Where clients may fetch the blob directly, or None to serve it ourselves."""
        return self.blobs.redirect_url(info.digest, info.location)

    def open_local(self, info: BlobInfo) -> int | None:
        """An open file descriptor of the blob for the HTTP server to read, or None if remote."""
        return self.blobs.open_local(info.digest, info.location)

    def relative_path(self, info: BlobInfo) -> str | None:
        """The blob's file below the blobs directory, for a front proxy to send, or None."""
        return self.blobs.relative_path(info.digest, info.location)

    def read(self, info: BlobInfo, first: int = 0, last: int | None = None) -> Iterator[bytes]:
        """Bytes ``first..last`` (inclusive) of the blob."""
        return self.blobs.read(info.digest, first, last, info.location)

    def delete(self, repository: str, digest: Digest) -> None:
        """Unlink the blob from the repository. Storage is reclaimed by garbage collection."""
        if not self.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletion is disabled on this registry")
        if not self.metadata.unlink_blob(repository, str(digest)):
            raise _unknown(digest)
