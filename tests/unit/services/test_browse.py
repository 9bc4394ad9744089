"""Browsing queries and their use case, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moorage.metadata.browse import NameMatch, TagOrder
from moorage.metadata.browse_sql import SqlBrowseStore
from moorage.metadata.sql import SqlMetadataStore
from moorage.oci.digest import Digest
from moorage.oci.inspect import Platform
from moorage.services import browse as browse_module
from moorage.services.blobs import BlobService
from moorage.services.browse import BrowseService
from moorage.services.listing import ListingService
from moorage.services.manifests import ManifestService
from moorage.services.pagination import PageLimits
from moorage.storage.filesystem import FilesystemBlobStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def blob(store: SqlMetadataStore, repository: str, data: bytes) -> dict[str, object]:
    digest = str(Digest.of_bytes(data))
    store.link_blob(repository, digest, len(data))
    return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}


def image(
    manifests: ManifestService, store: SqlMetadataStore, repository: str, tag: str, seed: bytes
) -> tuple[str, int]:
    """An image of a config and a layer; returns its digest and its blobs' size."""
    config, layer = blob(store, repository, b"config-" + seed), blob(store, repository, seed * 10)
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    record = manifests.put(repository, tag, json.dumps(body).encode(), OCI_MANIFEST)
    return record.digest, int(config["size"]) + int(layer["size"])  # type: ignore[call-overload]


@pytest.fixture
def service(store: SqlMetadataStore, tmp_path: Path) -> BrowseService:
    manifests = ManifestService(store, True)
    return BrowseService(
        SqlBrowseStore(store),
        manifests,
        ListingService(store, PageLimits(100, 1000)),
        BlobService(store, FilesystemBlobStore(tmp_path / "blobs"), True),
    )


def test_names_by_prefix_and_substring(store: SqlMetadataStore, service: BrowseService) -> None:
    for name in ("a/app", "a/app2", "b/app", "b/web", "ab/x_y"):
        store.link_blob(name, str(Digest.of_bytes(name.encode())), 1)
    names = service.browse.repository_names
    assert names("a/", NameMatch.PREFIX, 10, None) == ["a/app", "a/app2"]
    assert names("a", NameMatch.PREFIX, 10, None) == ["a/app", "a/app2", "ab/x_y"]
    assert names("app", NameMatch.CONTAINS, 10, None) == ["a/app", "a/app2", "b/app"]
    assert names("app", NameMatch.CONTAINS, 10, "a/app2") == ["b/app"]
    assert names("_", NameMatch.CONTAINS, 10, None) == ["ab/x_y"]
    assert names("%", NameMatch.CONTAINS, 10, None) == []
    assert names("", NameMatch.CONTAINS, 2, None) == ["a/app", "a/app2"]


def test_repository_page_filters_with_a_cursor(
    store: SqlMetadataStore, service: BrowseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browse_module, "NAME_SCAN_BATCH", 2)
    for i in range(9):
        store.link_blob(f"r/{i}", str(Digest.of_bytes(b"%d" % i)), 1)
    even = lambda name: int(name[-1]) % 2 == 0  # noqa: E731
    first = service.repositories("", NameMatch.CONTAINS, 2, None, even)
    assert [r.name for r in first.repositories] == ["r/0", "r/2"]
    assert first.next_last == "r/2"
    second = service.repositories("", NameMatch.CONTAINS, 2, first.next_last, even)
    assert [r.name for r in second.repositories] == ["r/4", "r/6"]
    third = service.repositories("", NameMatch.CONTAINS, 2, second.next_last, even)
    assert [r.name for r in third.repositories] == ["r/8"]
    assert third.next_last is None


def test_repository_page_reads_only_the_given_prefixes(
    store: SqlMetadataStore, service: BrowseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browse_module, "NAME_SCAN_BATCH", 2)
    for name in ("a/1", "a/2", "b/1", "c/1", "c/2", "c/3", "d/1"):
        store.link_blob(name, str(Digest.of_bytes(name.encode())), 1)
    read: list[str] = []
    names = service.browse.repository_names

    def counted(*args: object) -> list[str]:
        found = names(*args)  # type: ignore[arg-type]
        read.extend(found)
        return found

    monkeypatch.setattr(service.browse, "repository_names", counted)
    visible = lambda name: name != "c/2"  # noqa: E731
    first = service.repositories("", NameMatch.CONTAINS, 2, None, visible, ("c/", "a/"))
    assert [r.name for r in first.repositories] == ["a/1", "a/2"]
    assert first.next_last == "a/2"
    assert not {"b/1", "d/1"} & set(read)
    second = service.repositories("", NameMatch.CONTAINS, 2, "a/2", visible, ("a/", "c/"))
    assert [r.name for r in second.repositories] == ["c/1", "c/3"]
    assert second.next_last is None
    # A search within the ranges, and no ranges at all.
    found = service.repositories("3", NameMatch.CONTAINS, 5, None, visible, ("a/", "c/"))
    assert [r.name for r in found.repositories] == ["c/3"]
    found = service.repositories("c", NameMatch.PREFIX, 5, None, visible, ("a/", "c/"))
    assert [r.name for r in found.repositories] == ["c/1", "c/3"]
    assert service.repositories("", NameMatch.CONTAINS, 5, None, visible, ()).repositories == []


def test_summaries_tags_and_untagged(store: SqlMetadataStore, service: BrowseService) -> None:
    manifests = service.manifests
    amd, amd_size = image(manifests, store, "t/app", "v1", b"amd")
    arm, arm_size = image(manifests, store, "t/app", "v2", b"arm")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifests.get("t/app", digest).payload),
                "platform": {"os": "linux", "architecture": arch},
            }
            for digest, arch in ((amd, "amd64"), (arm, "arm64"))
        ],
    }
    manifests.put("t/app", "multi", json.dumps(index).encode(), OCI_INDEX)
    manifests.delete("t/app", "v2")  # arm is now only reachable through the index
    orphan, _ = image(manifests, store, "t/app", "gone", b"orphan")
    manifests.delete("t/app", "gone")

    [summary] = service.browse.repository_summaries(["t/app", "missing/repo"])
    assert summary.tag_count == 2
    assert summary.size == amd_size + arm_size + len(b"config-orphan") + len(b"orphan" * 10)
    assert summary.last_push is not None

    page = service.tags("t/app", TagOrder.NAME, 1, 10)
    assert page.total == 2 and page.pages == 1
    by_tag = {row.manifest.tag: row for row in page.rows}
    assert by_tag["v1"].manifest.size == amd_size
    assert by_tag["v1"].platforms == ()
    assert by_tag["multi"].manifest.size == amd_size + arm_size
    assert by_tag["multi"].platforms == (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert [row.manifest.tag for row in service.tags("t/app", TagOrder.TIME, 1, 10).rows] == [
        "multi",
        "v1",
    ]
    assert [row.manifest.tag for row in service.tags("t/app", TagOrder.NAME, 2, 1).rows] == ["v1"]

    untagged, more = service.untagged("t/app", 1, 10)
    assert {row.manifest.digest for row in untagged} == {arm, orphan}
    assert not more
    assert all(row.manifest.tag is None for row in untagged)
    assert service.browse.tag_count("no/such") is None


def test_image_details_group_referrers(store: SqlMetadataStore, service: BrowseService) -> None:
    subject, _ = image(service.manifests, store, "t/app", "v1", b"s")
    size = len(service.manifests.get("t/app", subject).payload)
    for kind, seed in (("x/sig", b"1"), ("x/sig", b"2"), ("x/sbom", b"3")):
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": kind,
            "config": blob(store, "t/app", b"{}"),
            "layers": [blob(store, "t/app", seed)],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size},
        }
        payload = json.dumps(body).encode()
        service.manifests.put("t/app", str(Digest.of_bytes(payload)), payload, OCI_MANIFEST)
    details = service.image("t/app", "v1")
    assert [(g.artifact_type, len(g.referrers)) for g in details.referrers] == [
        ("x/sbom", 1),
        ("x/sig", 2),
    ]
    assert details.config is None  # its bytes are not in this test's blob store
    assert details.manifest.content_size == len(b"config-s") + 10
