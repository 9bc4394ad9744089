"""Reading and deleting blobs as a repository sees them."""

from __future__ import annotations

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


class BlobService:
    def __init__(self, metadata: MetadataStore, blobs: BlobStore, delete_enabled: bool) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.delete_enabled = delete_enabled

    def stat(self, repository: str, digest: Digest) -> BlobInfo:
        """The blob if ``repository`` may serve it: linked to it and present in storage."""
        record = self.metadata.linked_blob(repository, str(digest))
        if record is None or self.blobs.stat(digest, record.location) is None:
            raise _unknown(digest)
        return BlobInfo(digest, record.size, record.location)

    def delete(self, repository: str, digest: Digest) -> None:
        """Unlink the blob from the repository. Storage is reclaimed by garbage collection."""
        if not self.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletion is disabled on this registry")
        if not self.metadata.unlink_blob(repository, str(digest)):
            raise _unknown(digest)
