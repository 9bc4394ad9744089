"""What the cluster path costs (issue 14, docs/dev/scale.md).

1. Round-trips per operation. The app runs in this process twice, as one node on SQLite and
   the filesystem, and as a cluster node on PostgreSQL and S3 (moto's server, redirects on),
   and each operation is sent once per round: manifest GET, blob HEAD, a 4 KiB blob pushed as
   podman and docker push it (POST, PATCH, PUT), a manifest PUT, and a blob GET (on S3 a
   redirect, then the client's GET of the pre-signed URL), and once a big blob (1 GiB by
   default) pushed the same way, its body streamed in one PATCH. SQL statements and transactions are
   counted with SQLAlchemy events on every engine (on PostgreSQL each transaction adds a
   BEGIN and a COMMIT round-trip to its statements); S3 requests by a counting proxy in front
   of moto (tests/support_s3.py ``FaultyProxy``), the client's pre-signed GET included.
2. Throughput through nginx (docs/deploy/nginx-cluster.conf over TLS, tests/e2e/cluster.py)
   with 1 node and with 3 nodes (2 workers each) on PostgreSQL and S3: manifest GET and blob
   HEAD with a bearer token (wrk), each run in the same invocation, reported as a ratio.

    .venv/bin/python bench/cluster_cost.py [--seconds 10] [--rounds 20] [--big-mib 1024]
                                           [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.cluster import Cluster
from tests.support_pg import postgres_server
from tests.support_s3 import SECRET_KEY, FaultyProxy, moto_server

import loadgen

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REPO = "bench/app"
OPERATIONS = ("manifest GET", "blob HEAD", "4 KiB blob push", "manifest PUT", "blob GET (pull)")
BIG_PUSH = "big blob push"
BIG_PIECE = 1024 * 1024


class SqlCounter:
    """Statements and transactions of every engine in this process (the app's included)."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self.checkouts = 0
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "connect", self._trace_sqlite)
        event.listen(Pool, "checkout", self._checkout)
        event.listen(Engine, "commit", self._transaction)
        event.listen(Engine, "rollback", self._transaction)

    def _statement(self, conn: Any, *_: Any) -> None:
        if conn.dialect.name != "sqlite":  # SQLite's are counted by the driver's trace
            self.statements += 1

    def _trace_sqlite(self, dbapi_connection: Any, _record: Any) -> None:
        # On SQLite the hot statements bypass SQLAlchemy (metadata/prepared.py): count what
        # the driver runs, as SQLAlchemy's event did (BEGIN IMMEDIATE included; not the
        # connection's PRAGMAs, nor COMMIT or ROLLBACK, which are counted as transactions).
        if hasattr(dbapi_connection, "set_trace_callback"):
            dbapi_connection.set_trace_callback(self._sqlite_statement)

    def _sqlite_statement(self, sql: str) -> None:
        if not sql.lstrip().upper().startswith(("PRAGMA", "COMMIT", "ROLLBACK")):
            self.statements += 1

    def _transaction(self, *_: Any) -> None:
        self.transactions += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def snapshot(self) -> tuple[int, int, int]:
        return self.statements, self.transactions, self.checkouts


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@asynccontextmanager
async def in_process(overrides: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    from moorage.app import create_app
    from moorage.config import load_settings

    app = create_app(load_settings(**overrides))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://registry.test", timeout=60
        ) as client,
    ):
        yield client


async def push_session(client: httpx.AsyncClient, repository: str, data: bytes) -> None:
    started = await client.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    patched = await client.patch(
        started.headers["location"],
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    patched.raise_for_status()
    closed = await client.put(patched.headers["location"], params={"digest": digest(data)})
    closed.raise_for_status()


def big_blob(mib: int) -> tuple[Callable[[], AsyncIterator[bytes]], str]:
    """A body of ``mib`` distinct MiB pieces, made as it is sent (never whole in memory), and
    its digest."""
    seed = hashlib.sha256(b"big blob").digest() * (BIG_PIECE // 32)

    def piece(n: int) -> bytes:
        return n.to_bytes(8, "big") + seed[8:]

    hasher = hashlib.sha256()
    for n in range(mib):
        hasher.update(piece(n))

    async def body() -> AsyncIterator[bytes]:
        for n in range(mib):
            yield piece(n)

    return body, f"sha256:{hasher.hexdigest()}"


async def push_big(client: httpx.AsyncClient, repository: str, mib: int) -> None:
    body, blob_digest = big_blob(mib)
    started = await client.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    patched = await client.patch(
        started.headers["location"],
        content=body(),
        headers={"Content-Type": "application/octet-stream"},
    )
    patched.raise_for_status()
    closed = await client.put(patched.headers["location"], params={"digest": blob_digest})
    closed.raise_for_status()


async def measure_counts(
    overrides: dict[str, Any],
    sql: SqlCounter,
    s3: Counter[str] | None,
    rounds: int,
    big_mib: int = 0,
) -> dict[str, dict[str, float]]:
    """Per operation: mean statements, transactions and S3 requests over ``rounds``; with
    ``big_mib``, also those of one push of a blob that size."""
    totals: dict[str, Counter[str]] = {op: Counter() for op in OPERATIONS}
    async with in_process(overrides) as client:
        # A first image, so that reads have something to find (not counted).
        config = b'{"architecture":"amd64","os":"linux"}'
        await push_session(client, REPO, config)
        external = httpx.AsyncClient(timeout=60)
        for n in range(rounds):
            layer = hashlib.sha256(f"layer {n}".encode()).digest() * 128  # 4 KiB, new each round
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": 37},
                    "layers": [{"mediaType": OCI_LAYER, "digest": digest(layer), "size": 4096}],
                }
            ).encode()

            async def blob_push(layer: bytes = layer) -> None:
                await push_session(client, REPO, layer)

            async def manifest_put(manifest: bytes = manifest, n: int = n) -> None:
                answer = await client.put(
                    f"/v2/{REPO}/manifests/v{n}",
                    content=manifest,
                    headers={"Content-Type": OCI_MANIFEST},
                )
                answer.raise_for_status()

            async def manifest_get(n: int = n) -> None:
                answer = await client.get(
                    f"/v2/{REPO}/manifests/v{n}", headers={"Accept": OCI_MANIFEST}
                )
                answer.raise_for_status()

            async def blob_head(layer: bytes = layer) -> None:
                (await client.head(f"/v2/{REPO}/blobs/{digest(layer)}")).raise_for_status()

            async def blob_get(layer: bytes = layer) -> None:
                answer = await client.get(f"/v2/{REPO}/blobs/{digest(layer)}")
                if answer.status_code == 307:  # S3 redirect: the client fetches from S3
                    answer = await external.get(answer.headers["location"])
                answer.raise_for_status()
                assert answer.content == layer

            steps: list[tuple[str, Callable[[], Any]]] = [
                ("4 KiB blob push", blob_push),
                ("manifest PUT", manifest_put),
                ("manifest GET", manifest_get),
                ("blob HEAD", blob_head),
                ("blob GET (pull)", blob_get),
            ]
            for name, step in steps:
                await count(sql, s3, totals[name], step)
        await external.aclose()
        averages = {op: {k: v / rounds for k, v in totals[op].items()} for op in OPERATIONS}
        if big_mib:
            big: Counter[str] = Counter()
            await count(sql, s3, big, lambda: push_big(client, REPO, big_mib))
            averages[f"{BIG_PUSH} ({big_mib} MiB)"] = dict(big)
    return averages


async def count(
    sql: SqlCounter,
    s3: Counter[str] | None,
    totals: Counter[str],
    step: Callable[[], Any],
) -> None:
    """Add the statements, transactions, checkouts and S3 requests of ``step`` to ``totals``."""
    statements, transactions, checkouts = sql.snapshot()
    s3_before = sum(s3.values()) if s3 is not None else 0
    await step()
    after = sql.snapshot()
    totals["statements"] += after[0] - statements
    totals["transactions"] += after[1] - transactions
    totals["checkouts"] += after[2] - checkouts
    # On PostgreSQL: each pooled checkout is pre-pinged (pool_pre_ping), each
    # transaction sends BEGIN and COMMIT or ROLLBACK besides its statements.
    totals["pg_round_trips"] += (
        after[0] - statements + 2 * (after[1] - transactions) + after[2] - checkouts
    )
    if s3 is not None:
        totals["s3"] += sum(s3.values()) - s3_before


def throughput(
    workdir: Path, nodes: int, seconds: int, max_connections: int
) -> dict[str, float | str]:
    """Requests/s through nginx; a run with failed answers reports what they were instead."""
    from tests.e2e.cluster import PASSWORD, USER, running_cluster

    postgres_settings = {"max_connections": str(max_connections)}
    with running_cluster(
        workdir, nodes_started=nodes, isolate_last=False, postgres_settings=postgres_settings
    ) as cluster:
        with cluster.client() as client:
            config = b'{"architecture":"amd64","os":"linux"}'
            layer = b"throughput layer" * 256
            for blob in (config, layer):
                client.post(
                    f"/v2/{REPO}/blobs/uploads/", params={"digest": digest(blob)}, content=blob
                ).raise_for_status()
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": 37},
                    "layers": [
                        {"mediaType": OCI_LAYER, "digest": digest(layer), "size": len(layer)}
                    ],
                }
            ).encode()
            client.put(
                f"/v2/{REPO}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
            ).raise_for_status()
            token = client.get(
                "/token",
                params={"service": "moorage", "scope": f"repository:{REPO}:pull"},
                auth=(USER, PASSWORD),
            ).json()["token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST}
        base = cluster.nginx.url
        get = loadgen.run_wrk(f"{base}/v2/{REPO}/manifests/v1", seconds=seconds, headers=headers)
        head = loadgen.run_wrk(
            f"{base}/v2/{REPO}/blobs/{digest(layer)}",
            seconds=seconds,
            headers=headers,
        )
        figures: dict[str, float | str] = {}
        for name, result in (("manifest GET", get), ("blob GET (307 redirect)", head)):
            figures[name] = result.requests_per_s
            if result.non_2xx:
                figures[name] = failed_answers(result, cluster)
    return figures


def failed_answers(result: loadgen.LoadResult, cluster: Cluster) -> str:
    """What the failed answers of a load run were: their share, the statuses the nodes logged,
    and nginx's commonest complaint."""
    statuses: Counter[str] = Counter()
    for node in cluster.nodes:
        statuses.update(re.findall(r" status=(\d+) ", node.log_path.read_text(errors="replace")))
    complaints: Counter[str] = Counter(
        re.sub(r"^.*?\] \S+ \*\d+ ", "", line).split(",")[0]
        for line in cluster.nginx.error_log.read_text(errors="replace").splitlines()
    )
    share = result.non_2xx / max(result.requests, 1)
    return (
        f"{share:.0%} of {result.requests} answers failed; node statuses {dict(statuses)}; "
        f"nginx: {complaints.most_common(2)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--big-mib", type=int, default=1024, help="size of the one big push (0: none)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sql = SqlCounter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="moorage-cluster-cost-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        results["single node (SQLite, filesystem)"] = asyncio.run(
            measure_counts(
                {"storage": {"data_dir": root / "single"}}, sql, None, args.rounds, args.big_mib
            )
        )
        postgres = stack.enter_context(postgres_server())
        database = stack.enter_context(postgres.fresh_database())
        s3 = stack.enter_context(moto_server(bucket="moorage-cost"))
        proxy = FaultyProxy(s3.endpoint)
        stack.callback(proxy.close)
        # The bucket reached through the counting proxy.
        bucket = s3.settings(redirect=True, endpoint_url=proxy.endpoint).model_dump()
        bucket["secret_access_key"] = SECRET_KEY
        cluster_overrides = {
            "storage": {"backend": "s3", "s3": bucket, "data_dir": root / "cluster"},
            "database": {"url": database},
        }
        results["cluster node (PostgreSQL, S3, redirects)"] = asyncio.run(
            measure_counts(cluster_overrides, sql, proxy.requests, args.rounds, args.big_mib)
        )
        # PostgreSQL's default max_connections (100) first, then room for every pool.
        for connections in (100, 400):
            for nodes in (1, 3):
                key = f"throughput, {nodes} node(s), max_connections={connections}"
                workdir = root / f"n{nodes}-c{connections}"  # nginx's -g takes no spaces
                results[key] = throughput(workdir, nodes, args.seconds, connections)

    for setup in ("single node (SQLite, filesystem)", "cluster node (PostgreSQL, S3, redirects)"):
        print(f"\n{setup}: per operation (mean of {args.rounds})")
        print(
            f"{'operation':<18}{'statements':>11}{'transactions':>13}{'checkouts':>10}"
            f"{'PG trips':>9}{'S3 requests':>12}"
        )
        for op, row in results[setup].items():
            print(
                f"{op:<18}{row.get('statements', 0):>11.1f}{row.get('transactions', 0):>13.1f}"
                f"{row.get('checkouts', 0):>10.1f}{row.get('pg_round_trips', 0):>9.1f}"
                f"{row.get('s3', 0):>12.1f}"
            )
    print(f"\nthrough nginx (TLS, bearer token, wrk -c64, {args.seconds} s): requests/s")
    for connections in (100, 400):
        one = results[f"throughput, 1 node(s), max_connections={connections}"]
        three = results[f"throughput, 3 node(s), max_connections={connections}"]
        print(f"PostgreSQL max_connections={connections}")
        for op in one:
            a, b = one[op], three[op]
            ratio = f"{b / a:.2f}" if isinstance(a, float) and isinstance(b, float) else "-"
            print(f"  {op:<24} 1 node: {a}\n  {'':<24} 3 nodes: {b}\n  {'':<24} ratio {ratio}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
