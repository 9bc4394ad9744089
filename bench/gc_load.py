"""The effect of a garbage collection on a registry serving requests.

`moorage serve --workers 2` on a database of 100,000 blobs and 20,000 manifests (rows, built as
in gc_scale.py) with 10% of the manifests deleted and their grace passed: manifest GETs (wrk,
64 connections) and small blob pushes (a client loop, monolithic POSTs of 1 KiB) are measured
for a few seconds alone, then again while `moorage gc` collects the 10,000 links and 10,000
blobs in another process.

    python bench/gc_load.py [--seconds 5] [--moorage .venv/bin/moorage]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import update

from gc_scale import GRACE, build
from loadgen import LoadResult, run_wrk
from moorage.metadata import schema as s
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from servers import moorage_server


def prepare(data: Path, garbage: float = 0.1) -> None:
    """The database, with 10% of the manifests deleted and their reviews due."""
    data.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{data / 'moorage.db'}")
    upgrade(engine)
    store = SqlMetadataStore(engine)
    build(store, 100_000, 20_000, 100)
    with store._read() as conn:
        victims = conn.execute(
            s.manifests.select()
            .with_only_columns(s.manifests.c.repository_id, s.manifests.c.digest)
            .where(s.manifests.c.id % int(1 / garbage) == 0)
        ).all()
    for row in victims:
        store.delete_manifest(f"bench/r{row.repository_id - 1}", row.digest)
    with store._write() as conn:
        conn.execute(update(s.gc_reviews).values(touched_at=s.gc_reviews.c.touched_at - GRACE - 1))
    engine.dispose()


def push_loop(url: str, seconds: float, seed: int) -> str:
    """Monolithic pushes of new 1 KiB blobs, one after the other: rate, p50, p99."""
    latencies = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        n = 0
        while time.monotonic() < deadline:
            data = hashlib.sha512(b"%d-%d" % (seed, n)).digest() * 16
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            started = time.perf_counter()
            response = http.post(f"/v2/bench/load/blobs/uploads/?digest={digest}", content=data)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
            n += 1
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return f"{len(latencies) / seconds:.0f} pushes/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def measure(url: str, seconds: int, seed: int) -> tuple[LoadResult, str]:
    pushes: list[str] = []
    pusher = threading.Thread(target=lambda: pushes.append(push_loop(url, seconds, seed)))
    pusher.start()
    gets = run_wrk(f"{url}/v2/bench/r0/manifests/t0", seconds=seconds)
    pusher.join()
    return gets, pushes[0]


def describe(gets: LoadResult) -> str:
    return f"{gets.requests_per_s:.0f} GETs/s, p50 {gets.p50_ms:.1f} ms, p99 {gets.p99_ms:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--moorage", default=str(Path(".venv/bin/moorage").resolve()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moorage-gc-load-") as tmp:
        workdir = Path(tmp)
        server = moorage_server(args.moorage, workdir, 2)
        data = workdir / "moorage-data"
        prepare(data)
        server.env = {**os.environ, "MOORAGE_GC__INTERVAL": "0"}
        argv = [args.moorage, "gc", "--data-dir", str(data), "--grace", "0s", "--quick"]
        with server:
            gets, pushes = measure(server.url, args.seconds, 1)
            print(f"GETs and pushes, alone:       {describe(gets)}; {pushes}")
            print(f"pushes only, alone:           {push_loop(server.url, args.seconds, 3)}")
            started = time.monotonic()
            collector = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=server.env)
            time.sleep(1.5)  # the CLI's start-up
            gets, pushes = measure(server.url, args.seconds, 2)
            print(f"GETs and pushes, during gc:   {describe(gets)}; {pushes}")
            print(f"pushes only, during gc:       {push_loop(server.url, args.seconds, 4)}")
            running = collector.poll() is None
            out, _ = collector.communicate(timeout=600)
            print(f"gc: {time.monotonic() - started:.1f} s wall, {out.strip().splitlines()[-1]}")
            if not running:
                print("(the collection ended before the measurements did)")


if __name__ == "__main__":
    main()
