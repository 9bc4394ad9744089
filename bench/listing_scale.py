"""Catalog and tags-list latency at scale: 100,000 repositories and 10,000 tags in one
repository, against the same queries on a small registry (100 repositories, 100 tags).

The rows are inserted straight into a fresh SQLite database (pushing 100,000 images over HTTP
would take an hour); the requests then go through the real app in-process, so the figures
include routing, the query and JSON rendering. A ratio near 1 means the listing cost does not
grow with the registry's size.

    .venv/bin/python bench/listing_scale.py [--repositories 100000] [--tags 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert

from moorage.app import create_app
from moorage.config import load_settings
from moorage.metadata import schema as s
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import make_engine

SAMPLES = 30


def populate(data_dir: Path, repositories: int, tags: int) -> None:
    engine = make_engine(f"sqlite:///{data_dir / 'moorage.db'}")
    upgrade(engine)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            insert(s.repositories),
            [
                {"name": f"team{i % 100:02d}/app-{i:06d}", "created_at": now}
                for i in range(repositories)
            ],
        )
        conn.execute(insert(s.repositories), [{"name": "big/tags", "created_at": now}])
        repository_id = conn.execute(
            s.repositories.select().where(s.repositories.c.name == "big/tags")
        ).first()
        assert repository_id is not None
        result = conn.execute(
            insert(s.manifests).values(
                repository_id=repository_id.id,
                digest="sha256:" + "0" * 64,
                media_type="application/vnd.oci.image.manifest.v1+json",
                payload=b"{}",
                created_at=now,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        conn.execute(
            insert(s.tags),
            [
                {
                    "repository_id": repository_id.id,
                    "name": f"v{i:05d}",
                    "manifest_id": key[0],
                    "updated_at": now,
                }
                for i in range(tags)
            ],
        )
    engine.dispose()


async def measure(data_dir: Path) -> dict[str, float]:
    app = create_app(load_settings(storage={"data_dir": data_dir}))
    paths = {
        "catalog first page (n=1000)": "/v2/_catalog?n=1000",
        "catalog deep page (n=1000, last=middle)": "/v2/_catalog?n=1000&last=team50/app-050000",
        "tags first page (n=1000)": "/v2/big/tags/tags/list?n=1000",
        "tags deep page (n=1000, last=middle)": "/v2/big/tags/tags/list?n=1000&last=v05000",
    }
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for label, path in paths.items():
                timings = []
                for _ in range(SAMPLES):
                    start = time.perf_counter()
                    response = await client.get(path)
                    timings.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
                results[label] = statistics.median(timings) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=10_000)
    args = parser.parse_args()
    figures = {}
    for label, repos, tags in (("small", 1001, 1001), ("large", args.repositories, args.tags)):
        with tempfile.TemporaryDirectory() as tmp:
            populate(Path(tmp), repos, tags)
            figures[label] = asyncio.run(measure(Path(tmp)))
    print(f"median latency over {SAMPLES} requests, in-process (ms)")
    print(f"{'request':42} {'small':>8} {'large':>8} {'large/small':>12}")
    for label in figures["small"]:
        small, large = figures["small"][label], figures["large"][label]
        print(f"{label:42} {small:8.2f} {large:8.2f} {large / small:11.2f}x")
    print(
        f"small: 1,001 repositories and tags; large: {args.repositories:,} repositories, "
        f"{args.tags:,} tags in one repository"
    )


if __name__ == "__main__":
    main()
