"""Manifest writes against concurrent deletes and concurrent pushes of the same tag."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import event

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.migrate import upgrade
from moorage.metadata.records import ManifestRecord, ManifestReferences
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.metadata.usage import Quota
from moorage.services.manifests import ManifestService

REPO = "m/race"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config: str, layer: str) -> bytes:
    def descriptor(d: str) -> dict[str, object]:
        return {"mediaType": "application/octet-stream", "digest": d, "size": 1}

    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config),
        "layers": [descriptor(layer)],
    }
    return json.dumps(body).encode()


class TagLandsFirst(SqlMetadataStore):
    """Another push creates the tag after the service parsed the manifest, just before the
    write: the race an immutable-tag check made before the write could not see."""

    rival = b""

    def put_manifest(
        self,
        repository: str,
        manifest: ManifestRecord,
        references: ManifestReferences,
        tags: list[str],
        keep_tags: bool = False,
        quota: Quota | None = None,
    ) -> list[str]:
        if self.rival:
            rival, self.rival = self.rival, b""
            ManifestService(self, True).put(repository, "v1", rival, OCI_MANIFEST)
        return super().put_manifest(repository, manifest, references, tags, keep_tags, quota)


def test_an_immutable_tag_created_during_a_push_is_not_moved(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    store = TagLandsFirst(engine)
    config, layer, other = _digest(b"c"), _digest(b"l"), _digest(b"o")
    for blob in (config, layer, other):
        store.link_blob(REPO, blob, 1)
    store.rival = _manifest(config, other)
    mine = _manifest(config, layer)
    with pytest.raises(RegistryError) as info:
        ManifestService(store, True).put(REPO, "v1", mine, OCI_MANIFEST, immutable_tags=True)
    assert info.value.code is ErrorCode.DENIED
    tagged = store.get_manifest(REPO, "v1", False)
    assert tagged is not None and tagged.payload == _manifest(config, other)
    assert store.get_manifest(REPO, _digest(mine), True) is None  # rolled back whole


def test_an_immutable_tag_may_be_pushed_again_unchanged(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    store = SqlMetadataStore(engine)
    config, layer = _digest(b"c"), _digest(b"l")
    store.link_blob(REPO, config, 1)
    store.link_blob(REPO, layer, 1)
    service = ManifestService(store, True)
    for _ in range(2):
        service.put(REPO, "v1", _manifest(config, layer), OCI_MANIFEST, immutable_tags=True)
    assert store.get_manifest(REPO, "v1", False) is not None


class DeleteLandsFirst(SqlMetadataStore):
    """A blob DELETE that commits after the service looked, just before the manifest write."""

    victim = ""

    def put_manifest(
        self,
        repository: str,
        manifest: ManifestRecord,
        references: ManifestReferences,
        tags: list[str],
        keep_tags: bool = False,
        quota: Quota | None = None,
    ) -> list[str]:
        self.unlink_blob(repository, self.victim)
        return super().put_manifest(repository, manifest, references, tags, keep_tags, quota)


def test_a_blob_deleted_during_a_manifest_put_is_never_left_referenced(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    store = DeleteLandsFirst(engine)
    config, layer = _digest(b"c"), _digest(b"l")
    store.link_blob(REPO, config, 1)
    store.link_blob(REPO, layer, 1)
    store.victim = layer
    with pytest.raises(RegistryError) as info:
        ManifestService(store, True).put(REPO, "v1", _manifest(config, layer), OCI_MANIFEST)
    assert info.value.code is ErrorCode.MANIFEST_BLOB_UNKNOWN
    assert store.get_manifest(REPO, "v1", False) is None


def test_manifest_and_tag_writes_are_upserts(database_url: str) -> None:
    # Select-then-insert lets two concurrent pushes both insert on PostgreSQL, and one fails
    # on the unique key; an ON CONFLICT upsert (rendered for either database) cannot.
    engine = make_engine(database_url)
    upgrade(engine)
    store = SqlMetadataStore(engine)
    config, layer = _digest(b"c"), _digest(b"l")
    store.link_blob(REPO, config, 1)
    store.link_blob(REPO, layer, 1)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    service = ManifestService(store, True)
    first = service.put(REPO, "v1", _manifest(config, layer), OCI_MANIFEST)
    again = service.put(REPO, "v1", _manifest(config, layer), OCI_MANIFEST)
    assert first.digest == again.digest
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    for table in ("manifests", "manifest_blobs", "tags"):
        into = [s for s in writes if s.split()[2] == table]
        assert into, table
        assert all("ON CONFLICT" in s for s in into), into
    assert not any(s.split()[1] == "tags" for s in writes if s.upper().startswith("UPDATE"))
    assert store.get_manifest(REPO, "v1", False) is not None
