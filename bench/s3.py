"""S3 backend throughput: push and pull of 256 MiB through ``S3BlobStore`` (the paths the
service uses: open_blob / write / close for a monolithic push, open_upload / write / close /
commit_upload for a session upload, then read) against a moto server,
versus a direct obstore streaming put / get of the same bytes to the same server in the same
run. Goal: each ratio >= 0.8. Rounds interleave the two; the best of each is reported. Digest
hashing is left out of both sides (it is the service's cost, the same for every backend).

    .venv/bin/python bench/s3.py [--mib 256] [--rounds 2] [--part-mib 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import obstore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support_s3 import moto_server

from moorage.oci.digest import Digest
from moorage.storage.s3 import S3BlobStore
from moorage.storage.s3_writer import PART_CONCURRENCY

MIB = 1024 * 1024
# A few distinct random blocks, cycled: the bytes differ along the blob, but the bench process
# holds only these, so its peak RSS shows what the store itself buffers.
BLOCKS = [os.urandom(MIB) for _ in range(8)]


def chunks(mib: int) -> Iterator[bytes]:
    for index in range(mib):
        yield BLOCKS[index % len(BLOCKS)]


def digest_of(mib: int) -> Digest:
    hasher = hashlib.sha256()
    for chunk in chunks(mib):
        hasher.update(chunk)
    return Digest("sha256", hasher.hexdigest())


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def drain(stream: Iterator[object]) -> None:
    for _ in stream:
        pass


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part-mib", type=int, default=8)
    args = parser.parse_args()
    mib: int = args.mib
    part = args.part_mib * MIB
    digest = digest_of(mib)
    best: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)
        print(f"  {name:<14} {mib / seconds:7.1f} MiB/s  peak RSS {peak_rss_mib():6.0f} MiB")

    with moto_server() as moto:
        store = S3BlobStore.from_settings(moto.settings(part_size_bytes=part, prefix="bench"))
        s3 = store.s3
        print(f"{mib} MiB, parts of {args.part_mib} MiB, {PART_CONCURRENCY} parts in flight")
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}")

            def direct_push() -> None:
                obstore.put(
                    s3,
                    "direct/blob",
                    chunks(mib),
                    chunk_size=part,
                    max_concurrency=PART_CONCURRENCY,
                )

            def moorage_push() -> None:
                # A monolithic push (POST ?digest=): straight to the blob's key, published on
                # close once the service has verified the digest.
                writer = store.open_blob(digest)
                for chunk in chunks(mib):
                    writer.write(chunk)
                writer.close()

            published: list[str | None] = []

            def moorage_staged_push(published: list[str | None] = published) -> None:
                # A session upload (POST, PATCH, PUT): published where it was written.
                writer = store.open_upload("b" * 32, 0)
                for chunk in chunks(mib):
                    writer.write(chunk)
                writer.close()
                published.append(store.commit_upload("b" * 32, digest, mib * MIB))

            record("direct push", timed(direct_push))
            record("moorage push", timed(moorage_push))
            store.delete(digest)
            record("moorage staged", timed(moorage_staged_push))
            record("direct pull", timed(lambda: drain(iter(obstore.get(s3, "direct/blob")))))
            record(
                "moorage pull",
                timed(lambda: drain(store.read(digest, location=published[-1]))),  # noqa: B023
            )
            obstore.delete(s3, "direct/blob")
            store.delete(digest)
            store.delete(digest, published[-1])
    for operation, ours_name in (
        ("push", "moorage push"),
        ("push", "moorage staged"),
        ("pull", "moorage pull"),
    ):
        direct, ours = best[f"direct {operation}"], best[ours_name]
        print(
            f"{ours_name}: {mib / ours:.1f} MiB/s, direct obstore {operation}"
            f" {mib / direct:.1f} MiB/s, ratio {direct / ours:.2f}"
        )


if __name__ == "__main__":
    main()
