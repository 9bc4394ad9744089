"""How long a garbage collection takes over a large registry on SQLite, rows only.

Builds 100,000 blobs and 20,000 manifests (5 blobs each: a config and 4 layers, every blob
used by one manifest, linked in its repository, 100 repositories), deletes 10% of the manifests
through the registry's own delete (which queues their links), ages the queue past the grace,
then times one incremental collection and one full run (the mark over every table; the blob
store is a stub whose listing is empty and whose deletes do nothing, so only the database
work is measured). Meanwhile a thread links blobs in a loop, as blob pushes do (one write
transaction each, synchronous=FULL): its latency and rate with the collection running are
compared with the same loop alone. The collection runs at the SQLite defaults of gc.batch_time
and gc.max_duty unless given; its write transactions (commits) are counted.

    python bench/gc_scale.py [--blobs 100000] [--manifests 20000] [--garbage 0.1]
                             [--batch-time 0.002] [--max-duty 0.05]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import event, insert, update

from moorage.metadata import schema as s
from moorage.metadata.gc_port import ManifestPolicy
from moorage.metadata.gc_sql import SQLITE_PACE, Pace, SqlGcStore
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.oci.digest import Digest

GRACE = 3600.0


class StubStore:
    """The blob store's part of a collection, for free: nothing listed, deletes counted."""

    def __init__(self) -> None:
        self.deleted = 0

    def delete(self, digest: Digest, location: str | None = None) -> None:
        self.deleted += 1

    def iter_blobs(self) -> Iterator[tuple[Digest, str | None]]:
        return iter(())

    def stat(self, digest: Digest, location: str | None = None) -> int | None:
        return None


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(b"blob %d" % n).hexdigest()


def build(store: SqlMetadataStore, blobs: int, manifests: int, repositories: int) -> None:
    per_manifest = blobs // manifests
    now = time.time()
    with store._write() as conn:
        conn.execute(
            insert(s.repositories),
            [{"id": r + 1, "name": f"bench/r{r}", "created_at": now} for r in range(repositories)],
        )
        conn.execute(
            insert(s.blobs),
            [
                {"digest": digest(n), "size": 1000 + n % 5000, "created_at": now}
                for n in range(blobs)
            ],
        )
        links, refs, rows, tags = [], [], [], []
        for m in range(manifests):
            repository_id = m % repositories + 1
            payload = json.dumps({"manifest": m}).encode()
            rows.append(
                {
                    "id": m + 1,
                    "repository_id": repository_id,
                    "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                    "media_type": "application/vnd.oci.image.manifest.v1+json",
                    "payload": payload,
                    "created_at": now,
                }
            )
            tags.append(
                {
                    "repository_id": repository_id,
                    "name": f"t{m}",
                    "manifest_id": m + 1,
                    "updated_at": now,
                }
            )
            for b in range(m * per_manifest, (m + 1) * per_manifest):
                links.append(
                    {"repository_id": repository_id, "digest": digest(b), "created_at": now}
                )
                refs.append({"manifest_id": m + 1, "digest": digest(b)})
        conn.execute(insert(s.manifests), rows)
        conn.execute(insert(s.tags), tags)
        conn.execute(insert(s.repository_blobs), links)
        conn.execute(insert(s.manifest_blobs), refs)


class Writer:
    """Links new blobs in a loop, one transaction each, timing every one."""

    def __init__(self, store: SqlMetadataStore, first: int) -> None:
        self.store, self.next = store, first
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.store.link_blob("bench/load", digest(self.next), 10)
            self.latencies.append(time.perf_counter() - started)
            self.next += 1

    def __enter__(self) -> Writer:
        self.started = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
        self.seconds = time.perf_counter() - self.started

    def describe(self) -> str:
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[int(len(ordered) * 0.99)] * 1000
        rate = len(ordered) / self.seconds
        return f"{rate:.0f} links/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--manifests", type=int, default=20_000)
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--garbage", type=float, default=0.1)
    parser.add_argument("--batch-time", type=float, default=SQLITE_PACE.batch_seconds)
    parser.add_argument("--max-duty", type=float, default=SQLITE_PACE.max_duty)
    args = parser.parse_args()

    # Imported here so that the module docstring is all `--help` needs.
    from moorage.services.gc import Collector

    with tempfile.TemporaryDirectory(prefix="moorage-gc-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'moorage.db'}")
        upgrade(engine)
        store = SqlMetadataStore(engine)
        started = time.perf_counter()
        build(store, args.blobs, args.manifests, args.repositories)
        print(
            f"built {args.blobs} blobs, {args.manifests} manifests in "
            f"{time.perf_counter() - started:.1f} s"
        )

        doomed = int(args.manifests * args.garbage)
        started = time.perf_counter()
        with store._read() as conn:
            victims = conn.execute(
                s.manifests.select()
                .with_only_columns(s.manifests.c.repository_id, s.manifests.c.digest)
                .where(s.manifests.c.id % int(1 / args.garbage) == 0)
                .limit(doomed)
            ).all()
        names = {r + 1: f"bench/r{r}" for r in range(args.repositories)}
        for row in victims:
            store.delete_manifest(names[row.repository_id], row.digest)
        print(
            f"deleted {len(victims)} manifests (queueing their links) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        with store._write() as conn:  # as if the grace had passed
            conn.execute(
                update(s.gc_reviews).values(touched_at=s.gc_reviews.c.touched_at - GRACE - 1)
            )

        blob_store = StubStore()
        pace = Pace(args.batch_time, args.max_duty)
        gc_store = SqlGcStore(store, pace)
        collector = Collector(gc_store, blob_store, ManifestPolicy(), lambda: 0)  # type: ignore[arg-type]
        # The collector runs on this thread, the writer on its own: count this thread's commits.
        commits = []
        collecting = threading.current_thread()
        event.listen(
            engine,
            "commit",
            lambda _: commits.append(1) if threading.current_thread() is collecting else None,
        )
        with Writer(store, 10 * args.blobs) as alone:
            time.sleep(3)
        with Writer(store, 20 * args.blobs) as beside:
            started_cpu = time.process_time()
            report = collector.run(GRACE)
            cpu = time.process_time() - started_cpu
        print(
            f"incremental collection ({pace}): {report.totals['link'].count} links, "
            f"{report.totals['blob'].count} blobs ({report.bytes_freed} bytes) in "
            f"{report.seconds:.2f} s, {len(commits)} write transactions; "
            f"{blob_store.deleted} byte deletes; process CPU meanwhile {cpu:.1f} s"
        )
        print(f"blob links by a concurrent writer, alone: {alone.describe()}")
        print(f"blob links by a concurrent writer, during the collection: {beside.describe()}")
        idle = collector.run(GRACE)
        print(f"incremental collection with nothing due: {idle.seconds * 1000:.1f} ms")
        full = collector.run(GRACE, full=True)
        print(
            f"full run (mark over every table, nothing left to collect): queued {full.queued}, "
            f"{full.seconds:.2f} s"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
