"""Parsing and validating manifest bodies (OCI image manifest/index, Docker schema 2 and lists).

The registry stores the exact bytes it was given; this module only reads them to learn the
media type and what the manifest references (blobs, child manifests, a subject).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from moorage.errors import ErrorCode, RegistryError
from moorage.oci import mediatypes
from moorage.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    # Where a foreign (non-distributable) layer is served from; such a layer need not be
    # pushed to the registry.
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """What a manifest says about itself and what it points at."""

    media_type: str
    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEXES


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message, detail)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    digest_text = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    if not isinstance(digest_text, str):
        raise _invalid(f"{where}.digest must be a string")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    try:
        digest = Digest.parse(digest_text)
    except RegistryError as error:
        raise _invalid(f"{where}.digest: {error.message}", {"digest": digest_text}) from None
    artifact_type = value.get("artifactType")
    annotations = value.get("annotations")
    urls = value.get("urls")
    if urls is not None and (
        not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls)
    ):
        raise _invalid(f"{where}.urls must be a list of URLs")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        annotations=_annotations(annotations, f"{where}.annotations"),
        urls=tuple(urls or ()),
    )


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where} must map strings to strings")
    return value


def _is_int(value: Any, expected: int) -> bool:
    """JSON number equality without True == 1 or 2.0 == 2."""
    return type(value) is int and value == expected


def _descriptor_list(value: Any, where: str, required: bool = False) -> tuple[Descriptor, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list of descriptors")
    return tuple(_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value))


def _media_type(body: dict[str, Any], content_type: str | None) -> str:
    declared = body.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = (content_type or "").split(";", 1)[0].strip().lower() or None
    if (
        body.get("schemaVersion") == 1
        or declared in mediatypes.SCHEMA1
        or (header in mediatypes.SCHEMA1)
    ):
        raise _invalid(
            "Docker schema 1 manifests are not supported; push with a current client "
            "(schema 2 or OCI)",
            {"mediaType": declared or header},
        )
    if "manifests" in body and ("layers" in body or "config" in body):
        raise _invalid("a manifest cannot be both an image manifest and an index")
    if declared and header in mediatypes.MANIFESTS and declared != header:
        raise _invalid(
            "Content-Type does not match the manifest's mediaType",
            {"contentType": header, "mediaType": declared},
        )
    media_type = declared or (header if header in mediatypes.MANIFESTS else None)
    if media_type is None:
        # Neither says: OCI allows mediaType to be absent, so infer from the shape.
        media_type = mediatypes.OCI_INDEX if "manifests" in body else mediatypes.OCI_MANIFEST
    if media_type not in mediatypes.MANIFESTS:
        raise _invalid(
            f"unsupported manifest media type {media_type!r}",
            {"supported": sorted(mediatypes.MANIFESTS)},
        )
    return media_type


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key appears twice. Parsers disagree on which of two keys
    wins (Python and Go keep the last, others the first or refuse), so the registry and a
    client or scanner could read two different manifests from the same bytes."""
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the common case costs one comparison
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _invalid(f"duplicate key {key!r} in a JSON object", {"key": key})
            seen.add(key)
    return obj


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    """Validate ``payload`` as a manifest; raise MANIFEST_INVALID (400) with a reason if not."""
    try:
        body = json.loads(payload, object_pairs_hook=_object_without_duplicate_keys)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, ...
        raise _invalid(f"manifest is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise _invalid("manifest must be a JSON object")
    media_type = _media_type(body, content_type)
    schema_version = body.get("schemaVersion")
    if not _is_int(schema_version, 2):
        raise _invalid("schemaVersion must be 2", {"schemaVersion": schema_version})
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(body["subject"], "subject") if body.get("subject") is not None else None
    annotations = _annotations(body.get("annotations"), "annotations") or {}

    if media_type in mediatypes.INDEXES:
        if "manifests" not in body:
            raise _invalid("an index must have a manifests list")
        # Only the index's own fields are read: unknown ones (a "blobs" list some tools add)
        # are neither validated nor required to exist, as the image spec says to ignore them.
        children = _descriptor_list(body["manifests"], "manifests", required=True)
        return ParsedManifest(media_type, (), children, subject, artifact_type, annotations)

    if "config" not in body:
        raise _invalid("an image manifest must have a config descriptor")
    config = _descriptor(body["config"], "config")
    if "layers" not in body:
        raise _invalid("an image manifest must have a layers list")
    layers = _descriptor_list(body["layers"], "layers", required=True)
    return ParsedManifest(
        media_type,
        (config, *layers),
        (),
        subject,
        artifact_type or config.media_type,
        annotations,
    )
