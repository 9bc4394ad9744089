"""Events reach a webhook receiver exactly as docs/operations.md documents them, signed; a
receiver that is down for a while misses nothing; the audit trail records each kind of entry
with the request that produced it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from moorage.events.signature import verify
from moorage.metadata.audit_sql import SqlAuditLog
from moorage.metadata.outbox import SqlEventStore
from moorage.metadata.sql import SqlMetadataStore, make_engine
from tests.api.support import ClientFactory, digest_of, push_image
from tests.api.test_auth_api import auth_files, password  # noqa: F401 (a fixture)
from tests.events_receiver import Receiver

SECRET = "s3cret-for-tests"


def events_config(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "allow_private_networks": True,  # the receiver is on loopback
        "backoff_initial": 0.2,
        "backoff_max": 0.5,
        "endpoints": [{"url": receiver.url, "secret": SECRET, "headers": {"X-Team": "a"}}],
        **extra,
    }


@pytest.fixture
def receiver() -> Any:
    r = Receiver().start()
    yield r
    r.stop()


def documented_shape(event: dict[str, Any]) -> None:
    assert set(event) == {
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"
    }  # fmt: skip
    assert event["specversion"] == "1.0"
    assert event["source"] == "/moorage"
    assert event["datacontenttype"] == "application/json"
    assert event["time"].endswith("Z")


async def test_each_change_sends_one_signed_cloudevent(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    async with make_client(events=events_config(receiver)) as client:
        digest, manifest = await push_image(client, "team/app", "1.0")
        await push_image(client, "team/app", "2.0", seed=b"y")
        assert (await client.delete("/v2/team/app/manifests/2.0")).status_code == 202
        assert (await client.delete(f"/v2/team/app/manifests/{digest}")).status_code == 202
        await push_image(client, "team/gone", "1", seed=b"z")
        assert (await client.delete("/api/v1/repositories/team/gone")).status_code in (200, 202)
        received = await receiver.arrive(6)
    events = [json.loads(r.body) for r in received]
    for r, event in zip(received, events, strict=True):
        assert r.headers["content-type"] == "application/cloudevents+json"
        assert verify(SECRET, r.body, r.headers["moorage-signature"])
        assert r.headers["moorage-event-id"] == event["id"]
        assert r.headers["x-team"] == "a"
        documented_shape(event)
    assert [e["type"] for e in events] == [
        "dev.moorage.manifest.pushed",
        "dev.moorage.manifest.pushed",
        "dev.moorage.tag.deleted",
        "dev.moorage.manifest.deleted",
        "dev.moorage.manifest.pushed",
        "dev.moorage.repository.deleted",
    ]
    pushed = events[0]
    assert pushed["subject"] == f"team/app@{digest}"
    assert pushed["data"] == {
        "repository": "team/app",
        "digest": digest,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": len(manifest),
        "tags": ["1.0"],
        "requestId": pushed["data"]["requestId"],
    }
    assert events[2]["subject"] == "team/app:2.0"
    assert events[2]["data"]["tag"] == "2.0"
    assert events[3]["data"]["digest"] == digest
    assert events[5]["subject"] == "team/gone"
    assert events[5]["data"] == {
        "repository": "team/gone",
        "tags": 1,
        "manifests": 1,
        "requestId": events[5]["data"]["requestId"],
    }
    assert len({e["id"] for e in events}) == 6


async def test_a_refused_push_sends_nothing(make_client: ClientFactory, receiver: Receiver) -> None:
    async with make_client(events=events_config(receiver)) as client:
        bad = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        bad += b'"config":{"mediaType":"a/b","digest":"sha256:' + b"0" * 64 + b'","size":1},'
        bad += b'"layers":[]}'
        response = await client.put(
            "/v2/team/app/manifests/x",
            content=bad,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert response.status_code == 400
        await push_image(client, "team/app", "ok")
        await receiver.arrive(1)
        await asyncio.sleep(1.5)
    assert len(receiver.received) == 1


async def test_a_receiver_down_for_a_while_misses_nothing(
    make_client: ClientFactory, storage: dict[str, Any]
) -> None:
    receiver = Receiver()  # not listening yet
    before = {outcome: deliveries(outcome) or 0 for outcome in ("failed", "delivered")}
    async with make_client(events=events_config(receiver)) as client:
        for n in range(3):
            await push_image(client, "team/app", f"v{n}", seed=bytes([n]))
        store = SqlEventStore(SqlMetadataStore(make_engine(_db(storage))))
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the first attempt failed and is scheduled again
            listed = await asyncio.to_thread(store.list)
            if any(d.attempts for e in listed for d in e.deliveries):
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        assert all(d.state == "pending" for e in listed for d in e.deliveries)
        receiver.start()
        try:
            received = await receiver.arrive(3)
        finally:
            receiver.stop()
    tags = [json.loads(r.body)["data"]["tags"] for r in received]
    assert tags == [["v0"], ["v1"], ["v2"]]
    for outcome in ("failed", "delivered"):
        assert (deliveries(outcome) or 0) > before[outcome]


def deliveries(outcome: str) -> float | None:
    return REGISTRY.get_sample_value("moorage_webhook_deliveries_total", {"outcome": outcome})


def _db(storage: dict[str, Any]) -> str:
    return f"sqlite:///{Path(storage['data_dir']) / 'moorage.db'}"


async def test_readyz_reports_the_outbox_backlog(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    async with make_client(events=events_config(receiver)) as client:
        body = (await client.get("/readyz")).json()
        assert body["checks"]["events"] == {"status": "ok", "backlog": 0}
    async with make_client() as client:  # no endpoint: events are off
        assert "events" not in (await client.get("/readyz")).json()["checks"]


async def _audit(storage: dict[str, Any]) -> list[Any]:
    await asyncio.sleep(1.3)  # each worker writes its entries once a second
    log = SqlAuditLog(SqlMetadataStore(make_engine(_db(storage))))
    return await asyncio.to_thread(log.query)


async def test_the_audit_trail_records_changes_and_refusals(
    make_client: ClientFactory,
    auth_files: dict[str, Path],  # noqa: F811
    storage: dict[str, Any],
    receiver: Receiver,
) -> None:
    async with make_client(auth=auth_files, events=events_config(receiver)) as client:
        writer = ("writer", password("writer"))
        deleter = ("deleter", password("deleter"))
        digest, _ = await push_image(
            httpx.AsyncClient(transport=client._transport, base_url="http://registry", auth=writer),
            "team-a/app",
            "1.0",
        )
        wrong = await client.get("/v2/team-a/app/tags/list", auth=("writer", "not-it"))
        assert wrong.status_code == 401
        for _ in range(5):  # coalesced into one entry
            denied = await client.delete(f"/v2/team-a/app/manifests/{digest}", auth=writer)
            assert denied.status_code == 403
        deleted = await client.delete(f"/v2/team-a/app/manifests/{digest}", auth=deleter)
        assert deleted.status_code == 202
        blob = digest_of(b"layer-x")
        deleted = await client.delete(f"/v2/team-a/app/blobs/{blob}", auth=deleter)
        assert deleted.status_code == 202
        root = ("root", password("root"))
        gone = await client.delete("/api/v1/repositories/team-a/app", auth=root)
        assert gone.status_code in (200, 202)
        entries = await _audit(storage)
        received = await receiver.arrive(3)
    actors = [(json.loads(r.body)["type"], json.loads(r.body)["data"]["actor"]) for r in received]
    assert actors == [
        ("dev.moorage.manifest.pushed", "writer"),
        ("dev.moorage.manifest.deleted", "deleter"),
        ("dev.moorage.repository.deleted", "root"),
    ]
    by_action = {e.action: e for e in entries}
    push = by_action["manifest.push"]
    assert (push.user, push.repository, push.reference, push.status) == (
        "writer", "team-a/app", "1.0", 201
    )  # fmt: skip
    assert push.request_id and push.client == "127.0.0.1"
    failed = by_action["login.failed"]
    assert (failed.user, failed.outcome, failed.status) == ("writer", "refused", 401)
    denial = by_action["access.denied"]
    assert (denial.user, denial.count, denial.reference) == ("writer", 5, digest)
    delete = by_action["manifest.delete"]
    assert (delete.user, delete.reference, delete.outcome) == ("deleter", digest, "ok")
    assert (by_action["blob.delete"].user, by_action["blob.delete"].reference) == (
        "deleter", blob
    )  # fmt: skip
    repository_delete = by_action["repository.delete"]
    assert (repository_delete.user, repository_delete.repository) == ("root", "team-a/app")
    text = repr(entries)
    assert password("writer") not in text and "not-it" not in text


async def test_pulls_are_events_only_when_asked_for(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    async with make_client(events=events_config(receiver)) as client:
        digest, _ = await push_image(client, "team/app", "1.0")
        assert (await client.get("/v2/team/app/manifests/1.0")).status_code == 200
        await receiver.arrive(1)
        await asyncio.sleep(1.5)
    assert len(receiver.received) == 1
    async with make_client(events=events_config(receiver, pull=True)) as client:
        assert (await client.head("/v2/team/app/manifests/1.0")).status_code == 200
        assert (await client.get("/v2/team/app/manifests/1.0")).status_code == 200
        received = await receiver.arrive(2)
    pulled = json.loads(received[1].body)
    assert pulled["type"] == "dev.moorage.manifest.pulled"
    assert pulled["data"]["reference"] == "1.0" and pulled["data"]["digest"] == digest
    await asyncio.sleep(0)
    assert len(receiver.received) == 2  # the HEAD is not a pull


async def test_an_endpoint_that_never_answers_holds_up_no_other(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    config = events_config(receiver)
    # TEST-NET-1: nothing answers there, so each attempt waits for its whole timeout.
    config["endpoints"].insert(0, {"url": "http://192.0.2.1:9/hook", "timeout": 30})
    async with make_client(events=config) as client:
        loop = asyncio.get_running_loop()
        for n in range(3):
            await push_image(client, "team/app", f"v{n}", seed=bytes([n]))
        started = loop.time()
        await receiver.arrive(3, seconds=10)
        assert loop.time() - started < 10
