"""A manifest's descriptors must give the sizes the registry holds (issue 9, item 4): clients
trust a descriptor's size when they pull. On SQLite and PostgreSQL (the sizes are a query)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.sql import SqlMetadataStore
from moorage.services.manifests import ManifestService

REPO = "m/sizes"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def _image(config: tuple[str, int], layers: list[tuple[str, int]]) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json", *config),
        "layers": [_descriptor("application/octet-stream", *layer) for layer in layers],
    }
    return json.dumps(body).encode()


def _index(children: list[tuple[str, int]]) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [_descriptor(OCI_MANIFEST, *child) for child in children],
    }
    return json.dumps(body).encode()


def _refusal(service: ManifestService, payload: bytes, media_type: str) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        service.put(REPO, "t", payload, media_type)
    assert info.value.code is ErrorCode.MANIFEST_INVALID
    return info.value


@pytest.fixture
def blobs(store: SqlMetadataStore) -> dict[str, int]:
    sizes = {_digest(b"config"): 6, _digest(b"layer one"): 9, _digest(b"layer two!"): 10}
    for digest, size in sizes.items():
        store.link_blob(REPO, digest, size)
    return sizes


def test_blob_sizes_must_match(store: SqlMetadataStore, blobs: dict[str, int]) -> None:
    service = ManifestService(store, True)
    config, one, two = blobs.items()
    error = _refusal(service, _image(config, [one, (two[0], two[1] + 1)]), OCI_MANIFEST)
    assert error.detail == {"digest": two[0], "size": 11, "stored": 10}
    assert two[0] in error.message
    error = _refusal(service, _image((config[0], 0), [one]), OCI_MANIFEST)
    assert error.detail == {"digest": config[0], "size": 0, "stored": 6}
    # The same layer twice, once with a wrong size.
    _refusal(service, _image(config, [one, (one[0], 8)]), OCI_MANIFEST)
    assert store.get_manifest(REPO, "t", False) is None
    service.put(REPO, "t", _image(config, [one, two]), OCI_MANIFEST)


def test_a_missing_blob_is_still_reported_as_unknown(
    store: SqlMetadataStore, blobs: dict[str, int]
) -> None:
    config, one, _ = blobs.items()
    with pytest.raises(RegistryError) as info:
        ManifestService(store, True).put(
            REPO, "t", _image(config, [one, (_digest(b"absent"), 3)]), OCI_MANIFEST
        )
    assert info.value.code is ErrorCode.MANIFEST_BLOB_UNKNOWN


def test_child_sizes_must_be_the_manifests_lengths(
    store: SqlMetadataStore, blobs: dict[str, int]
) -> None:
    service = ManifestService(store, True)
    config, one, two = blobs.items()
    child = _image(config, [one, two])
    child_digest = service.put(REPO, "child", child, OCI_MANIFEST).digest
    error = _refusal(service, _index([(child_digest, len(child) - 1)]), OCI_INDEX)
    assert error.detail == {"digest": child_digest, "size": len(child) - 1, "stored": len(child)}
    service.put(REPO, "t", _index([(child_digest, len(child))]), OCI_INDEX)
