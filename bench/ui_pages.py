"""Web UI page times at scale: the repository list at 100,000 repositories and a repository with
10,000 tags, p50 and p95 of the server's time per page, and the weight of each page.

Rows are inserted straight into a fresh SQLite database (pushing that many images over HTTP
would take an hour): every repository has one manifest, one tag and two linked blobs, and
``big/tags`` has 10,000 tags on 10,000 manifests of two blobs each, so every aggregate a page
shows (tag counts, sizes, last push, per-tag sizes) has rows to add up. Requests go through the
real app in-process (routing, the queries, the policy filter and the templates).

    .venv/bin/python bench/ui_pages.py [--repositories 100000] [--tags 10000] [--samples 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, select

from moorage.app import create_app
from moorage.auth.htpasswd import add_user
from moorage.config import load_settings
from moorage.metadata import schema as s
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import make_engine

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BATCH = 20_000


def _digest(kind: str, i: int) -> str:
    return f"sha256:{kind}{i:063d}"[:71]


def _manifest_payload(i: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "c", "digest": _digest("c", i), "size": 1000},
            "layers": [{"mediaType": "l", "digest": _digest("a", i), "size": 10_000_000}],
        }
    ).encode()


def _insert(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        conn.execute(insert(table), rows[start : start + BATCH])


def populate(data_dir: Path, repositories: int, tags: int) -> None:
    url = f"sqlite:///{data_dir / 'moorage.db'}"
    migrated = make_engine(url)
    upgrade(migrated)
    migrated.dispose()
    # A plain engine: the registry's own commits each row durably outside a transaction here
    # (its BEGIN is only for writes it marks), which would take minutes for these rows.
    engine = create_engine(url)
    now = time.time()
    images = repositories + tags
    with engine.begin() as conn:
        _insert(
            conn,
            s.blobs,
            [
                {"digest": _digest(kind, i), "size": size, "created_at": now}
                for i in range(images)
                for kind, size in (("c", 1000), ("a", 10_000_000))
            ],
        )
        names = [f"team{i % 100:02d}/app-{i:06d}" for i in range(repositories)] + ["big/tags"]
        _insert(conn, s.repositories, [{"name": name, "created_at": now} for name in names])
        ids = dict(conn.execute(select(s.repositories.c.name, s.repositories.c.id)).all())
        owners = [ids[name] for name in names[:repositories]] + [ids["big/tags"]] * tags
        _insert(
            conn,
            s.repository_blobs,
            [
                {"repository_id": owners[i], "digest": _digest(kind, i), "created_at": now}
                for i in range(images)
                for kind in ("c", "a")
            ],
        )
        _insert(
            conn,
            s.manifests,
            [
                {
                    "repository_id": owners[i],
                    "digest": _digest("e", i),
                    "media_type": MANIFEST,
                    "payload": _manifest_payload(i),
                    "created_at": now - i,
                }
                for i in range(images)
            ],
        )
        manifest_ids = dict(conn.execute(select(s.manifests.c.digest, s.manifests.c.id)).all())
        _insert(
            conn,
            s.manifest_blobs,
            [
                {"manifest_id": manifest_ids[_digest("e", i)], "digest": _digest(kind, i)}
                for i in range(images)
                for kind in ("c", "a")
            ],
        )
        _insert(
            conn,
            s.tags,
            [
                {
                    "repository_id": owners[i],
                    "name": "latest" if i < repositories else f"v{i - repositories:05d}",
                    "manifest_id": manifest_ids[_digest("e", i)],
                    "updated_at": now - i,
                }
                for i in range(images)
            ],
        )
    engine.dispose()


Result = tuple[str, float, float, int]

# Who the second app's policy lets see what: a team (1,000 of the 100,000 repositories) and
# one user who may pull a single repository.
POLICY = """
rules:
  - repositories: ["team07/*"]
    users: [team]
    actions: [pull]
  - repositories: ["team99/app-09999*"]
    users: [few]
    actions: [pull]
"""


async def _time_pages(
    client: httpx.AsyncClient, paths: dict[str, str], samples: int
) -> list[Result]:
    # Warm up the process (templates compiled, threads and their SQLite readers open).
    for path in paths.values():
        for _ in range(5):
            await client.get(path)
    results = []
    for label, path in paths.items():
        response = await client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            response = await client.get(path)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        results.append((label, statistics.median(times), p95, len(response.content)))
    return results


async def measure(data_dir: Path, samples: int, tags: int) -> list[Result]:
    app = create_app(load_settings(storage={"data_dir": data_dir}))
    last_page = max(1, -(-tags // 50))
    paths = {
        "repositories, first page": "/ui/",
        "repositories, deep page": "/ui/?last=team50/app-050000",
        "repositories, prefix search": "/ui/?q=team42/app-0&match=prefix",
        "repositories, substring search (rare)": "/ui/?q=app-07777&match=contains",
        "repositories, substring search (common)": "/ui/?q=app&match=contains",
        "10,000 tags, by name": "/ui/r/big/tags",
        "10,000 tags, by push time": "/ui/r/big/tags?sort=time",
        "10,000 tags, last page": f"/ui/r/big/tags?page={last_page}",
        "10,000 tags, with untagged": "/ui/r/big/tags?untagged=1",
        "10,000 tags, with usage (on request)": "/ui/r/big/tags?usage=1",
        "a small repository (its usage shown)": "/ui/r/team00/app-000000",
        "image page": "/ui/r/big/tags/-/m/v00042",
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            return await _time_pages(client, paths, samples)


async def measure_with_policy(data_dir: Path, samples: int) -> list[Result]:
    """The repository list for users who may see 1,000 and 1 of the repositories."""
    htpasswd = data_dir / "htpasswd"
    for user in ("team", "few"):
        add_user(htpasswd, user, f"{user}-password")
    policy = data_dir / "policy.yaml"
    policy.write_text(POLICY)
    settings = load_settings(
        storage={"data_dir": data_dir}, auth={"htpasswd": htpasswd, "policy_file": policy}
    )
    app = create_app(settings)
    results = []
    async with app.router.lifespan_context(app):
        for user, label in (("team", "1,000 visible"), ("few", "1 visible")):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                form = (await client.get("/ui/sign-in")).text
                match = re.search(r'name="csrf" value="([^"]+)"', form)
                assert match is not None
                signed = await client.post(
                    "/ui/sign-in",
                    data={"csrf": match.group(1), "username": user, "password": f"{user}-password"},
                )
                assert signed.status_code == 303, signed.text
                paths = {f"repositories, {label}, first page": "/ui/"}
                results += await _time_pages(client, paths, samples)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moorage-ui-bench-") as work:
        data_dir = Path(work)
        start = time.perf_counter()
        populate(data_dir, args.repositories, args.tags)
        print(f"populated in {time.perf_counter() - start:.1f} s")
        results = asyncio.run(measure(data_dir, args.samples, args.tags))
        results += asyncio.run(measure_with_policy(data_dir, args.samples))
    print(f"{'page':42} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>8}")
    for label, p50, p95, size in results:
        print(f"{label:42} {p50:8.1f} {p95:8.1f} {size:8d}")
    print(f"largest page: {max(size for *_, size in results)} bytes")


if __name__ == "__main__":
    main()
