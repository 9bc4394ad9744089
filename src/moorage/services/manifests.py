"""Pushing, pulling and deleting manifests and tags."""

from __future__ import annotations

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.port import MetadataStore, TagTaken
from moorage.metadata.records import ManifestRecord, ManifestReferences
from moorage.metadata.usage import QuotaExceeded
from moorage.oci.digest import DEFAULT_ALGORITHM, Digest, is_digest_like
from moorage.oci.manifest import Descriptor, parse_manifest
from moorage.oci.names import is_valid_tag, parse_tag
from moorage.services.usage import NO_QUOTAS, Quotas, quota_refusal


def _unknown(reference: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference[:256]})


def _stored_key(reference: str) -> tuple[str, bool]:
    """The key a manifest named by ``reference`` is stored under (a canonical digest, or a
    tag) and whether it is a digest.

    A reference that is neither a valid digest nor a valid tag raises MANIFEST_UNKNOWN (404),
    not a 400: nothing can ever be stored under it, so for a read or a delete it names a
    manifest that does not exist (the OCI conformance suite pulls ``.INVALID_MANIFEST_NAME``
    and expects 404). Only a push refuses such a reference as invalid
    (:meth:`ManifestService.put`)."""
    if is_digest_like(reference):
        try:
            return str(Digest.parse(reference)), True
        except RegistryError:
            raise _unknown(reference) from None
    if not is_valid_tag(reference):
        raise _unknown(reference)
    return reference, False


def _check_sizes(descriptors: tuple[Descriptor, ...], stored: dict[str, int]) -> None:
    """Each descriptor's size must be the size of what the registry holds under its digest
    (``stored``: a blob's recorded size, a child manifest's length): clients trust it when they
    pull. Digests missing from ``stored`` are not judged here."""
    for descriptor in descriptors:
        digest = str(descriptor.digest)
        size = stored.get(digest)
        if size is not None and size != descriptor.size:
            raise RegistryError(
                ErrorCode.MANIFEST_INVALID,
                f"descriptor of {digest} gives size {descriptor.size}, but it is {size} bytes",
                {"digest": digest, "size": descriptor.size, "stored": size},
            )


class ManifestService:
    def __init__(
        self, metadata: MetadataStore, delete_enabled: bool, quotas: Quotas = NO_QUOTAS
    ) -> None:
        self.metadata = metadata
        self.delete_enabled = delete_enabled
        self.quotas = quotas

    def put(
        self,
        repository: str,
        reference: str,
        payload: bytes,
        content_type: str | None,
        extra_tags: list[str] = [],  # noqa: B006 - never mutated
        immutable_tags: bool = False,
    ) -> ManifestRecord:
        """Validate and store a manifest under a tag or its digest (plus ``?tag=`` tags).

        ``immutable_tags``: tags may be created (or pushed again with the same manifest, as a
        retrying CI job does) but not moved to another manifest; that is DENIED."""
        tags = [parse_tag(tag) for tag in extra_tags]
        if is_digest_like(reference):
            expected = Digest.parse(reference)
            digest = Digest.of_bytes(payload, expected.algorithm)
            if digest != expected:
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID,
                    "manifest content does not match the digest in the URL",
                    {"expected": reference, "actual": str(digest)},
                )
        else:
            tags.insert(0, parse_tag(reference))
            digest = Digest.of_bytes(payload, DEFAULT_ALGORITHM)

        parsed = parse_manifest(payload, content_type)
        blob_refs = {str(d.digest) for d in parsed.blobs}
        child_refs = {str(d.digest) for d in parsed.children}
        # Checked before the write transaction: what a digest names, and so its size, cannot
        # change. Digests the repository lacks are left to put_manifest, which names them.
        if blob_refs:
            _check_sizes(parsed.blobs, self.metadata.blob_sizes(repository, blob_refs))
        if child_refs:
            _check_sizes(parsed.children, self.metadata.manifest_sizes(repository, child_refs))
        record = ManifestRecord(
            digest=str(digest),
            media_type=parsed.media_type,
            payload=payload,
            artifact_type=parsed.artifact_type,
            subject=str(parsed.subject.digest) if parsed.subject else None,
            annotations=parsed.annotations,
        )
        references = ManifestReferences(
            tuple(sorted(blob_refs)),
            tuple(sorted(child_refs)),
            tuple(sorted({str(d.digest) for d in parsed.blobs if d.urls})),
        )
        try:
            missing = self.metadata.put_manifest(
                repository,
                record,
                references,
                tags,
                keep_tags=immutable_tags,
                quota=self.quotas.for_repository(repository),
            )
        except QuotaExceeded as exceeded:
            raise quota_refusal(repository, exceeded) from None
        except TagTaken as taken:
            tag = taken.tags[0][:128]
            raise RegistryError(
                ErrorCode.DENIED, f"tag {tag!r} exists and is immutable", {"tag": tag}
            ) from None
        if missing:
            raise RegistryError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                "manifest references blobs or manifests this repository does not have",
                {"missing": missing[:20]},
            )
        return record

    def get(self, repository: str, reference: str) -> ManifestRecord:
        record = self.metadata.get_manifest(repository, *_stored_key(reference))
        if record is None:
            raise _unknown(reference)
        return record

    def delete(self, repository: str, reference: str) -> None:
        """By digest: the manifest and all its tags. By tag: only the tag."""
        if not self.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletion is disabled on this registry")
        key, by_digest = _stored_key(reference)
        if by_digest:
            deleted = self.metadata.delete_manifest(repository, key)
        else:
            deleted = self.metadata.delete_tag(repository, key)
        if not deleted:
            raise _unknown(reference)
