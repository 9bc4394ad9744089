"""Usage, quotas and repository delete on the metadata layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from typing import Any

import pytest
from sqlalchemy import event

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata import sql as sql_module
from moorage.metadata import usage_sql
from moorage.metadata.sql import SqlMetadataStore
from moorage.metadata.usage import DeletedRepository, Quota
from moorage.metadata.usage_sql import SqlUsageStore
from moorage.services.manifests import ManifestService
from moorage.services.repositories import RepositoryService
from moorage.services.usage import Quotas, UsageService

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(store: SqlMetadataStore, repository: str, name: str, size: int) -> str:
    digest = _digest(name.encode())
    store.link_blob(repository, digest, size)
    return digest


def manifest(store: SqlMetadataStore, config: str, *layers: str) -> bytes:
    def descriptor(d: str) -> dict[str, object]:
        stored = store.blob(d)
        assert stored is not None
        return {"mediaType": "application/octet-stream", "digest": d, "size": stored.size}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config),
            "layers": [descriptor(d) for d in layers],
        }
    ).encode()


def push(service: ManifestService, repository: str, tag: str, payload: bytes) -> None:
    service.put(repository, tag, payload, OCI_MANIFEST)


def test_usage_counts_shared_blobs_once_per_repository_and_namespace(
    store: SqlMetadataStore,
) -> None:
    service = ManifestService(store, True)
    config = blob(store, "team/app", "config", 10)
    base = blob(store, "team/app", "base", 1000)
    v1 = blob(store, "team/app", "v1", 100)
    v2 = blob(store, "team/app", "v2", 200)
    first, second = manifest(store, config, base, v1), manifest(store, config, base, v2)
    push(service, "team/app", "1", first)
    push(service, "team/app", "2", second)
    push(service, "team/app", "latest", second)
    # team/api shares the base layer; solo has its own config and layer.
    for digest, size in ((config, 10), (base, 1000)):
        store.link_blob("team/api", digest, size)
    api = manifest(store, config, base)
    push(service, "team/api", "1", api)
    solo_config, solo_layer = blob(store, "solo", "sc", 7), blob(store, "solo", "sl", 3)
    solo = manifest(store, solo_config, solo_layer)
    push(service, "solo", "1", solo)
    blob(store, "team/app", "uploaded-but-unused", 5000)

    report = UsageService(SqlUsageStore(store)).report()
    by_name = {u.name: u for u in report.repositories}
    assert [u.name for u in report.repositories] == ["solo", "team/api", "team/app"]
    app = by_name["team/app"]
    assert (app.tags, app.manifests, app.blobs) == (3, 2, 4)
    assert app.blob_bytes == 10 + 1000 + 100 + 200
    assert app.manifest_bytes == len(first) + len(second)
    assert app.bytes == 1310 + len(first) + len(second)
    assert (app.unreferenced_blobs, app.unreferenced_bytes) == (1, 5000)
    assert by_name["team/api"].bytes == 1010 + len(api)
    assert by_name["solo"].bytes == 10 + len(solo)

    namespaces = {n.name: n for n in report.namespaces}
    assert set(namespaces) == {"", "team"}
    team = namespaces["team"]
    assert (team.repositories, team.blobs, team.blob_bytes) == (2, 4, 1310)
    assert team.bytes == 1310 + len(first) + len(second) + len(api)
    assert namespaces[""].bytes == by_name["solo"].bytes
    manifests = len(first) + len(second) + len(api) + len(solo)
    assert (report.distinct_blobs, report.distinct_bytes) == (6, 1320 + manifests)
    assert (report.stored_blobs, report.stored_bytes) == (7, 6320)

    only_team = UsageService(SqlUsageStore(store)).report("team/a?i")
    assert [u.name for u in only_team.repositories] == ["team/api"]
    assert only_team.distinct_bytes == by_name["team/api"].bytes
    assert only_team.stored_bytes == 6320  # the store's figure is registry-wide


def test_one_repositorys_usage_is_its_report_entry_with_its_quota(
    store: SqlMetadataStore,
) -> None:
    """What a repository's page shows: the report's figures for it, and the quota a push to it
    is checked against (how full, in bytes and tags)."""
    service = ManifestService(store, True)
    config, layer = blob(store, "team/app", "config", 10), blob(store, "team/app", "layer", 990)
    push(service, "team/app", "1", manifest(store, config, layer))
    blob(store, "team/app", "uploaded-but-unused", 5000)
    push(service, "solo", "1", manifest(store, blob(store, "solo", "c", 1)))
    store_ = SqlUsageStore(store)
    quotas = Quotas([Quota("team/*", max_bytes=4000, max_tags=4)])
    usage = UsageService(store_, quotas)

    standing = usage.repository("team/app")
    assert standing is not None
    (expected,) = UsageService(store_).report("team/app").repositories
    assert standing.usage == expected
    assert (expected.unreferenced_bytes, expected.tags) == (5000, 1)
    assert standing.quota == quotas.for_repository("team/app")
    assert standing.bytes_fraction == expected.bytes / 4000
    assert standing.tags_fraction == 0.25
    solo = usage.repository("solo")
    assert solo is not None and solo.quota is None
    assert (solo.bytes_fraction, solo.tags_fraction) == (None, None)
    assert usage.repository("team/missing") is None
    # A name is matched exactly, never as a pattern (LIKE would take `_` for any character).
    assert usage.repository("team_app") is None


def test_usage_of_an_empty_registry(store: SqlMetadataStore) -> None:
    report = UsageService(SqlUsageStore(store)).report()
    assert report.repositories == [] and report.namespaces == []
    assert (report.distinct_bytes, report.stored_bytes) == (0, 0)


def test_an_underscore_in_a_pattern_is_literal(store: SqlMetadataStore) -> None:
    for name in ("a_b/x", "acb/x"):
        push(ManifestService(store, True), name, "1", manifest(store, blob(store, name, "c", 1)))
    report = UsageService(SqlUsageStore(store)).report("a_b/*")
    assert [u.name for u in report.repositories] == ["a_b/x"]


def limited(store: SqlMetadataStore, **limits: int) -> ManifestService:
    return ManifestService(store, True, Quotas([Quota("q/*", **limits)]))


def test_a_push_over_max_bytes_is_refused_and_stores_nothing(store: SqlMetadataStore) -> None:
    service = limited(store, max_bytes=2000)
    config = blob(store, "q/app", "config", 10)
    small = manifest(store, config, blob(store, "q/app", "small", 500))
    push(service, "q/app", "v1", small)
    big = manifest(store, config, blob(store, "q/app", "big", 1600))
    with pytest.raises(RegistryError) as info:
        push(service, "q/app", "v2", big)
    error = info.value
    assert error.code is ErrorCode.DENIED and error.status == 403
    used = 10 + 500 + 1600 + len(small) + len(big)
    assert "'q/*'" in error.message and "max_bytes" in error.message
    assert f"({used} bytes)" in error.message and "(2000 bytes)" in error.message
    assert error.detail == {
        "repository": "q/app",
        "quota": "q/*",
        "limit": "max_bytes",
        "allowed": 2000,
        "usage": used,
    }
    assert store.get_manifest("q/app", _digest(big), True) is None
    assert store.list_tags("q/app", 10, None) == ["v1"]
    # The refused push's blobs stay linked (the collector's business) but do not count: a
    # push that fits still does.
    push(service, "q/app", "v3", manifest(store, config, blob(store, "q/app", "tiny", 100)))
    assert store.list_tags("q/app", 10, None) == ["v1", "v3"]


def test_a_push_adding_no_bytes_is_allowed_over_a_lowered_quota(store: SqlMetadataStore) -> None:
    payload = manifest(store, blob(store, "q/app", "c", 10), blob(store, "q/app", "l", 5000))
    push(ManifestService(store, True), "q/app", "v1", payload)
    push(limited(store, max_bytes=100), "q/app", "again", payload)  # a new tag, no new bytes
    assert store.list_tags("q/app", 10, None) == ["again", "v1"]


def test_max_tags_refuses_new_tags_only(store: SqlMetadataStore) -> None:
    service = limited(store, max_tags=2)
    config = blob(store, "q/app", "c", 1)
    one, two = manifest(store, config, blob(store, "q/app", "1", 1)), manifest(store, config)
    push(service, "q/app", "a", one)
    push(service, "q/app", "b", one)
    with pytest.raises(RegistryError) as info:
        push(service, "q/app", "c", two)
    assert info.value.code is ErrorCode.DENIED
    assert "max_tags 2 tags" in info.value.message and "3 tags" in info.value.message
    assert store.get_manifest("q/app", _digest(two), True) is None
    push(service, "q/app", "b", two)  # moving a tag creates none
    assert store.list_tags("q/app", 10, None) == ["a", "b"]


def test_the_first_matching_quota_applies(store: SqlMetadataStore) -> None:
    quotas = Quotas([Quota("q/big", max_bytes=10**9), Quota("q/*", max_bytes=1)])
    assert quotas.for_repository("q/big") == Quota("q/big", max_bytes=10**9)
    assert quotas.for_repository("q/small") == Quota("q/*", max_bytes=1)
    assert quotas.for_repository("other") is None


def test_no_quota_means_no_extra_statement(store: SqlMetadataStore) -> None:
    config = blob(store, "free/app", "c", 1)
    first, second = manifest(store, config), manifest(store, config, config)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    push(ManifestService(store, True), "free/app", "1", first)
    plain = len(statements)
    statements.clear()
    # Quotas configured, but none for this repository.
    push(limited(store, max_bytes=1, max_tags=1), "free/app", "2", second)
    assert len(statements) == plain


def test_concurrent_pushes_never_exceed_the_quota_together(
    store: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each push alone fits, not both. Each push's check waits (up to a second) for the other
    # to reach its check too: if the two could check at once, in two uncommitted transactions,
    # each would see only itself and both would land. The repository lock (one writer on
    # SQLite) makes the second wait for the first's commit, and then see it.
    meeting = threading.Barrier(2)
    real_check = usage_sql.enforce_quota

    def check_together(*args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait(timeout=1)
        real_check(*args, **kwargs)

    monkeypatch.setattr(sql_module, "enforce_quota", check_together)
    service = limited(store, max_bytes=1000 + 400)
    config = blob(store, "q/race", "c", 0)
    payloads = [manifest(store, config, blob(store, "q/race", f"l{i}", 1000)) for i in range(2)]
    outcomes: list[str] = []

    def run(index: int) -> None:
        try:
            push(service, "q/race", f"t{index}", payloads[index])
            outcomes.append("ok")
        except RegistryError as error:
            outcomes.append(error.code.name)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["DENIED", "ok"]
    assert len(store.list_tags("q/race", 10, None) or []) == 1


def test_repository_delete_removes_it_and_spares_the_others(store: SqlMetadataStore) -> None:
    service = ManifestService(store, True)
    config, layer = blob(store, "gone/app", "c", 10), blob(store, "gone/app", "l", 20)
    index_child = manifest(store, config, layer)
    push(service, "gone/app", "1", index_child)
    push(service, "gone/app", "2", index_child)
    blob(store, "gone/app", "only-linked", 30)
    for digest in (config, layer):
        store.link_blob("kept/app", digest, 1)
    push(service, "kept/app", "1", index_child)

    deleted = RepositoryService(SqlUsageStore(store)).delete("gone/app")
    assert (deleted.name, deleted.tags, deleted.manifests, deleted.linked_blobs) == (
        "gone/app",
        2,
        1,
        3,
    )
    assert store.list_tags("gone/app", 10, None) is None
    assert store.get_manifest("gone/app", _digest(index_child), True) is None
    assert store.linked_blob("gone/app", layer) is None
    assert store.list_repositories(10, None) == ["kept/app"]
    kept = store.get_manifest("kept/app", "1", False)
    assert kept is not None and kept.payload == index_child
    assert store.linked_blob("kept/app", layer) is not None
    assert store.blob(_digest(b"only-linked")) is not None  # bytes stay for the collector
    with pytest.raises(RegistryError) as info:
        RepositoryService(SqlUsageStore(store)).delete("gone/app")
    assert info.value.code is ErrorCode.NAME_UNKNOWN
    # The name can be pushed to again, from scratch.
    store.link_blob("gone/app", config, 10)
    push(service, "gone/app", "new", manifest(store, config))
    assert store.list_tags("gone/app", 10, None) == ["new"]


def test_repository_delete_refused_when_deletes_are_disabled(store: SqlMetadataStore) -> None:
    with pytest.raises(RegistryError) as info:
        RepositoryService(SqlUsageStore(store), delete_enabled=False).delete("any/thing")
    assert info.value.code is ErrorCode.UNSUPPORTED


def test_a_repository_delete_waits_for_a_quota_checked_push(
    store: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The push holds the repository's row (the writer lock on SQLite) from before its checks
    # until it commits, and the delete takes that row first: the delete waits, then removes
    # the push's manifest and tag too. Neither fails and nothing is left half-deleted.
    service = limited(store, max_bytes=10**9)
    config = blob(store, "q/app", "c", 1)
    deleted: list[DeletedRepository | None] = []
    deleter = threading.Thread(
        target=lambda: deleted.append(SqlUsageStore(store).delete_repository("q/app"))
    )
    real_check = usage_sql.enforce_quota

    def check_while_deleting(*args: Any, **kwargs: Any) -> None:
        deleter.start()
        deleter.join(timeout=0.5)
        assert deleter.is_alive()  # blocked behind this push
        real_check(*args, **kwargs)

    monkeypatch.setattr(sql_module, "enforce_quota", check_while_deleting)
    push(service, "q/app", "v1", manifest(store, config))
    deleter.join(timeout=30)
    assert len(deleted) == 1
    result = deleted[0]
    assert result is not None and (result.tags, result.manifests) == (1, 1)
    assert store.list_tags("q/app", 10, None) is None


# PostgreSQL only: on SQLite writers take turns, so an upload's link waits for any push.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_quota_checked_push_does_not_hold_up_blob_uploads(
    store: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FOR NO KEY UPDATE on the repository row does not conflict with the KEY SHARE lock a
    # blob link's foreign key takes, so uploads go on while a push checks its quota.
    service = limited(store, max_bytes=10**9)
    config = blob(store, "q/app", "c", 1)
    linked = threading.Event()
    real_check = usage_sql.enforce_quota

    def upload() -> None:
        blob(store, "q/app", "new", 5)
        linked.set()

    def check_while_uploading(*args: Any, **kwargs: Any) -> None:
        uploader = threading.Thread(target=upload)
        uploader.start()
        assert linked.wait(timeout=10), "the blob link waited for the push"
        real_check(*args, **kwargs)

    monkeypatch.setattr(sql_module, "enforce_quota", check_while_uploading)
    push(service, "q/app", "v1", manifest(store, config))
    assert store.linked_blob("q/app", _digest(b"new")) is not None
