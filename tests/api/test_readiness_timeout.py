"""/readyz answers within health.check_timeout_seconds when a dependency hangs (a frozen S3
server, a PostgreSQL that stopped answering), naming it, and recovers once it answers again."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.support import ClientFactory
from tests.support_pg import PostgresServer
from tests.support_s3 import SECRET_KEY, MotoServer, moto_server
from tests.support_stall import StallingRelay

TIMEOUT = 0.5
# The answer's bound: the timeout plus room for a busy machine (the hang lasts far longer).
BOUND = TIMEOUT + 2.0


def readyz_threads() -> int:
    return sum(thread.name == "moorage-readyz" for thread in threading.enumerate())


async def timed_readyz(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = await client.get("/readyz")
    return response, time.monotonic() - start


async def wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "never ready again"
        await asyncio.sleep(0.2)


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    """A moto server of this test's own, to freeze."""
    with moto_server() as server:
        yield server


async def test_a_frozen_s3_server_fails_readiness_in_time(
    make_client: ClientFactory, own_moto: MotoServer
) -> None:
    s3 = own_moto.settings()
    storage = {"backend": "s3", "s3": {**s3.model_dump(), "secret_access_key": SECRET_KEY}}
    health = {"check_timeout_seconds": TIMEOUT}
    assert own_moto.pid is not None
    async with make_client(storage=storage, health=health) as client:
        assert (await client.get("/readyz")).status_code == 200
        # Checks of earlier tests' failing stores end within their client's retries.
        for _ in range(300):  # 30 s at most
            if not readyz_threads():
                break
            await asyncio.sleep(0.1)
        threads = readyz_threads()
        os.kill(own_moto.pid, signal.SIGSTOP)  # listening, accepting, never answering
        try:
            answers = [await timed_readyz(client) for _ in range(3)]
            # One check of the frozen store is still hanging, whatever the number of asks.
            assert readyz_threads() == threads + 1
        finally:
            os.kill(own_moto.pid, signal.SIGCONT)
        await wait_ready(client)
    for response, seconds in answers:
        assert response.status_code == 503 and seconds < BOUND
        checks = response.json()["checks"]
        assert checks["storage"] == {"status": "failing", "error": "TimeoutError"}
        assert checks["database"]["status"] == "ok"


async def test_a_hung_postgresql_fails_readiness_in_time(
    make_client: ClientFactory, postgres: PostgresServer
) -> None:
    with postgres.fresh_database() as url:
        relay = StallingRelay(postgres.host, postgres.port)
        through_relay = url.replace(f":{postgres.port}/", f":{relay.port}/")
        try:
            async with make_client(
                database={"url": through_relay}, health={"check_timeout_seconds": TIMEOUT}
            ) as client:
                assert (await client.get("/readyz")).status_code == 200
                relay.stalled = True
                response, seconds = await timed_readyz(client)
                relay.stalled = False
                await wait_ready(client)
        finally:
            relay.close()
    assert response.status_code == 503 and seconds < BOUND
    checks = response.json()["checks"]
    assert checks["database"] == {"status": "failing", "error": "TimeoutError"}
    assert checks["storage"]["status"] == "ok"
