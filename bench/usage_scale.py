"""Usage and quota costs at scale: the ``moorage usage`` report over 10,000 repositories, and
what a quota adds to a manifest PUT (in a small repository and in one with 2,000 manifests).

Rows are inserted straight into a fresh database (10,000 repositories of 3 images each: a
config, 2 layers shared registry-wide from a pool of 50 and 2 layers of their own; 30,000
manifests, 150,000 manifest->blob references). The PUTs then go through ManifestService and the
real SqlMetadataStore, so they include the quota's queries in the push's transaction.

    .venv/bin/python bench/usage_scale.py [--repositories 10000] [--sqlite FILE] [--postgres URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from moorage.metadata import schema as s
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.metadata.usage import Quota
from moorage.metadata.usage_sql import SqlUsageStore
from moorage.services.manifests import ManifestService
from moorage.services.usage import Quotas

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SHARED_LAYERS = 50
SHARED_SIZE, OWN_SIZE = 50_000_000, 1_000_000
PUTS = 200


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def manifest(config: str, layers: list[str], nonce: str = "") -> bytes:
    """Layers from the shared pool are SHARED_SIZE bytes, every other blob OWN_SIZE."""

    def descriptor(d: str) -> dict[str, Any]:
        size = SHARED_SIZE if d in SHARED else OWN_SIZE
        return {"mediaType": "application/octet-stream", "digest": d, "size": size}

    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config),
        "layers": [descriptor(d) for d in layers],
    }
    if nonce:
        body["annotations"] = {"nonce": nonce}
    return json.dumps(body).encode()


SHARED = [digest(f"shared-{i}") for i in range(SHARED_LAYERS)]


def populate(engine: Engine, repositories: int, images: int, prefix: str = "team") -> None:
    now = time.time()
    shared = SHARED
    with engine.begin() as conn:
        if prefix == "team":
            conn.execute(
                insert(s.blobs),
                [{"digest": d, "size": SHARED_SIZE, "created_at": now} for d in shared],
            )
        names = [f"{prefix}{i % 100:02d}/app-{i:06d}" for i in range(repositories)]
        conn.execute(insert(s.repositories), [{"name": n, "created_at": now} for n in names])
        ids = {
            row.name: row.id
            for row in conn.execute(select(s.repositories.c.name, s.repositories.c.id))
        }
        blobs, links, manifests, refs, tags = [], [], [], [], []
        for index, name in enumerate(names):
            rid = ids[name]
            for image in range(images):
                own = [digest(f"{name}-{image}-{k}") for k in ("config", "l1", "l2")]
                layers = [shared[(index + image) % SHARED_LAYERS], shared[index % 7], *own[1:]]
                blobs += [{"digest": d, "size": OWN_SIZE, "created_at": now} for d in own]
                links += [
                    {"repository_id": rid, "digest": d, "created_at": now} for d in {*own, *layers}
                ]
                payload = manifest(own[0], layers)
                manifests.append(
                    {
                        "repository_id": rid,
                        "digest": digest(payload.decode()),
                        "media_type": OCI_MANIFEST,
                        "payload": payload,
                        "created_at": now,
                    }
                )
                refs.append((rid, digest(payload.decode()), [own[0], *layers]))
                tags.append((rid, f"v{image}", digest(payload.decode())))
        conn.execute(insert(s.blobs), blobs)
        conn.execute(
            insert(s.repository_blobs),
            list({(r["repository_id"], r["digest"]): r for r in links}.values()),
        )
        conn.execute(insert(s.manifests), manifests)
        mids = {
            (r, d): i
            for i, r, d in conn.execute(
                select(s.manifests.c.id, s.manifests.c.repository_id, s.manifests.c.digest)
            )
        }
        conn.execute(
            insert(s.manifest_blobs),
            [
                {"manifest_id": mids[(rid, mdigest)], "digest": d}
                for rid, mdigest, ds in refs
                for d in set(ds)
            ],
        )
        conn.execute(
            insert(s.tags),
            [
                {
                    "repository_id": rid,
                    "name": tag,
                    "manifest_id": mids[(rid, m)],
                    "updated_at": now,
                }
                for rid, tag, m in tags
            ],
        )


def time_report(store: SqlMetadataStore, samples: int = 5) -> tuple[float, int]:
    usage = SqlUsageStore(store)
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        report = usage.usage()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000, len(report.repositories)


def time_puts(store: SqlMetadataStore, repository: str) -> tuple[float, float]:
    """Median ms of a manifest PUT to ``repository`` without and with a quota, interleaved;
    each pushed manifest is deleted again (untimed), so the repository keeps its size."""
    config, layer = digest(f"{repository}-0-config"), digest(f"{repository}-0-l1")
    plain = ManifestService(store, True)
    limited = ManifestService(store, True, Quotas([Quota("*", 10**15, 10**6)]))
    timings: dict[bool, list[float]] = {False: [], True: []}
    for i in range(PUTS):
        for quota, service in ((False, plain), (True, limited)):
            payload = manifest(config, [layer], nonce=f"{quota}-{i}")
            start = time.perf_counter()
            record = service.put(repository, f"bench-{i}", payload, OCI_MANIFEST)
            timings[quota].append(time.perf_counter() - start)
            store.delete_manifest(repository, record.digest)
    return statistics.median(timings[False]) * 1000, statistics.median(timings[True]) * 1000


def run(engine: Engine, repositories: int) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        empty = conn.execute(select(s.repositories.c.id).limit(1)).first() is None
    if empty:  # else a database kept by an earlier run (--sqlite FILE)
        start = time.perf_counter()
        populate(engine, repositories, 3)
        populate(engine, 1, 2000, prefix="big")
        print(f"  populated in {time.perf_counter() - start:.1f} s")
    if engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load; without statistics the planner scans
        # the blobs table for the quota's query (12 ms instead of 0.2 ms).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    store = SqlMetadataStore(engine)
    ms, count = time_report(store)
    print(f"  usage report over {count:,} repositories: {ms:.0f} ms (median of 5)")
    for label, repository in (
        ("3 manifests, 15 references", "team01/app-000001"),
        ("2,000 manifests, 10,000 references", "big00/app-000000"),
    ):
        plain, limited = time_puts(store, repository)
        print(
            f"  manifest PUT, {label}: {plain:.2f} ms without a quota, {limited:.2f} ms with "
            f"one (+{limited - plain:.2f} ms; medians of {PUTS})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL to run on too")
    parser.add_argument(
        "--sqlite", type=Path, help="keep the SQLite database in this file (reused if it exists)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite")
        path = args.sqlite or Path(tmp) / "moorage.db"
        run(make_engine(f"sqlite:///{path.resolve()}"), args.repositories)
    if args.postgres:
        print("PostgreSQL")
        run(make_engine(args.postgres), args.repositories)


if __name__ == "__main__":
    main()
