"""The blob store's and the database pool's metrics, as a scrape shows them: calls timed by
backend and operation, failures of a real S3 endpoint (one answering 503, one gone) counted
with the retries the client made, and the pool's connections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from moorage.storage.port import StorageUnavailable
from moorage.storage.s3_errors import classify
from tests.api.support import ClientFactory, error_code, push_blob
from tests.api.test_metrics_api import Samples, scrape, value
from tests.support_s3 import SECRET_KEY, FaultyProxy, MotoServer

SECONDS = "moorage_storage_operation_duration_seconds_count"
ERRORS = "moorage_storage_errors_total"
RETRIES = "moorage_storage_retries_total"
OPERATIONS = {"stat", "read", "redirect_url", "delete", "iter_blobs", "open_upload", "open_blob",
              "upload_size", "read_upload", "commit_upload", "abort_upload", "stale_uploads",
              "check", "probe", "write", "close", "discard"}  # fmt: skip


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def s3_total(before: Samples, after: Samples, name: str) -> float:
    """``name``'s increase over every operation on S3."""
    return sum(
        count - before.get((metric, labels), 0.0)
        for (metric, labels), count in after.items()
        if metric == name and ("backend", "s3") in labels
    )


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
async def test_store_calls_are_timed_by_backend_and_operation(
    make_client: ClientFactory, backend: str
) -> None:
    async with make_client() as client:
        before = await scrape(client)
        digest = await push_blob(client, "team/app", b"timed bytes")
        assert (await client.get(f"/v2/team/app/blobs/{digest}")).content == b"timed bytes"
        assert (await client.get("/readyz")).status_code == 200
        after = await scrape(client)
    for operation in ("read", "check"):
        assert delta(before, after, SECONDS, backend=backend, operation=operation) == 1
    written = "open_blob" if backend == "s3" else "commit_upload"
    assert delta(before, after, SECONDS, backend=backend, operation=written) == 1
    assert not any(name == ERRORS and value > 0 for (name, _), value in after.items())
    seen = {dict(labels)["operation"] for name, labels in after if name == SECONDS}
    assert seen <= OPERATIONS


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(moto.endpoint)
    yield faulty
    faulty.close()


def through(moto: MotoServer, proxy: FaultyProxy) -> dict[str, Any]:
    """``storage`` settings for blobs in moto, reached through ``proxy``."""
    s3 = moto.settings(endpoint_url=proxy.endpoint)
    return {"backend": "s3", "s3": {**s3.model_dump(), "secret_access_key": SECRET_KEY}}


async def test_a_failing_s3_endpoint_counts_errors_and_retries(
    make_client: ClientFactory, moto: MotoServer, proxy: FaultyProxy
) -> None:
    async with make_client(storage=through(moto, proxy)) as client:
        digest = await push_blob(client, "team/app", b"soon unreachable")
        before = await scrape(client)
        proxy.fail_with = (503, "SlowDown")
        throttled = await client.get(f"/v2/team/app/blobs/{digest}")
        proxy.fail_with = None
        after = await scrape(client)
    assert throttled.status_code in (429, 503) and error_code(throttled)
    # The blob's first S3 request (a HEAD) failed, after the client's 3 retries
    # (moorage.storage.s3); nothing else was tried.
    assert delta(before, after, ERRORS, backend="s3", operation="stat") == 1
    assert delta(before, after, RETRIES, backend="s3", operation="stat") == 3
    assert (s3_total(before, after, ERRORS), s3_total(before, after, RETRIES)) == (1, 3)


async def test_a_stopped_s3_endpoint_counts_errors(
    make_client: ClientFactory, moto: MotoServer, proxy: FaultyProxy
) -> None:
    async with make_client(storage=through(moto, proxy)) as client:
        digest = await push_blob(client, "team/app", b"soon gone")
        before = await scrape(client)
        proxy.close()  # nothing listens there any more: connection refused
        gone = await client.get(f"/v2/team/app/blobs/{digest}")
        ready = await client.get("/readyz")
        after = await scrape(client)
    assert gone.status_code == 503 and ready.status_code == 503
    for operation in ("stat", "check"):  # the blob GET's HEAD, and the readiness check
        assert delta(before, after, ERRORS, backend="s3", operation=operation) == 1
    assert s3_total(before, after, ERRORS) == 2


def test_the_retries_are_read_from_the_clients_last_words() -> None:
    text = (
        "Generic S3 error: Error performing HEAD http://127.0.0.1:1/b/x in 50ms, after 3 "
        "retries, max_retries: 3, retry_timeout: 20s - Server returned non-2xx status code: "
        "503 Service Unavailable"
    )
    assert classify(text, "b", "e").retries == 3
    assert classify("status code: 403", "b", "e").retries == 0
    assert StorageUnavailable("plain").retries == 0


async def test_the_database_pool_is_gauged(make_client: ClientFactory) -> None:
    async with make_client(database={"pool_size": 3, "max_overflow": 2}) as client:
        samples = await scrape(client)
    assert value(samples, "moorage_db_pool_connections_max") == 5
    # Nothing but the app's own background jobs holds a connection (test_db_pool.py counts
    # connections held).
    assert 0 <= value(samples, "moorage_db_pool_connections_in_use") <= 2
