"""What the HTTP handlers are given: the services, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.metadata.port import MetadataStore
from moorage.services.blobs import BlobService
from moorage.services.listing import ListingService
from moorage.services.manifests import ManifestService
from moorage.services.uploads import UploadService
from moorage.storage.port import BlobStore


@dataclass(frozen=True, slots=True)
class Registry:
    uploads: UploadService
    blobs: BlobService
    manifests: ManifestService
    listing: ListingService
    metadata: MetadataStore
    storage: BlobStore
    manifest_max_bytes: int
