"""Bytes a garbage collection reclaims per second, on the filesystem and on S3 (moto).

Pushes ``--blobs`` blobs of ``--mib`` MiB each into one repository (monolithic uploads through
the upload service, as a registry would store them) and deletes nothing else: no manifest
references them, so once the grace has passed each link, then each blob, is garbage. One
incremental collection then reclaims them all; its rate is compared with the plain deletes of
the same number of objects of the same size through the store alone (``os.unlink`` of files,
obstore deletes against the same moto server), measured in the same run and alternated over
``--rounds``. The ratio says what the collector's database work costs on top of the deletes.
The collection runs flat out (``gc.max_duty: 1``); at the default duty it takes 1/duty as long.

    python bench/gc_reclaim.py [--blobs 200] [--mib 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support_s3 import moto_server

from moorage.metadata.gc_port import ManifestPolicy
from moorage.metadata.gc_sql import SQLITE_PACE, Pace, SqlGcStore
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.oci.digest import Digest
from moorage.services.gc import Collector
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore
from moorage.storage.port import BlobStore
from moorage.storage.s3 import S3BlobStore

GRACE = 3600.0
MiB = 1024 * 1024


def blobs_of(count: int, mib: int, salt: str) -> list[tuple[Digest, bytes]]:
    base = os.urandom(mib * MiB)
    out = []
    for n in range(count):
        data = f"{salt}-{n}".encode() + base
        out.append((Digest("sha256", hashlib.sha256(data).hexdigest()), data))
    return out


def collect_rate(store: BlobStore, workdir: Path, count: int, mib: int, salt: str) -> float:
    """Seconds one collection takes to reclaim ``count`` pushed, unreferenced blobs."""
    engine = make_engine(f"sqlite:///{workdir / f'{salt}.db'}")
    upgrade(engine)
    metadata = SqlMetadataStore(engine)
    uploads = UploadService(metadata, store, expiry_seconds=86400)
    for digest, data in blobs_of(count, mib, salt):
        uploads.put_whole("bench/garbage", digest, data)
    # Flat out (no duty-cycle pause): the database work's cost, not the pacing's.
    collector = Collector(
        SqlGcStore(metadata, Pace(SQLITE_PACE.batch_seconds, max_duty=1.0)),
        store,
        ManifestPolicy(),
        uploads.expire,
        clock=lambda: time.time() + GRACE + 1,
    )
    started = time.perf_counter()
    report = collector.run(GRACE, full=False)
    seconds = time.perf_counter() - started
    assert report.totals["blob"].count == count, report.totals
    engine.dispose()
    return seconds


def plain_delete_seconds(
    put: Callable[[str, bytes], None],
    delete: Callable[[str], None],
    count: int,
    mib: int,
    salt: str,
) -> float:
    names = []
    for digest, data in blobs_of(count, mib, salt):
        put(digest.encoded, data)
        names.append(digest.encoded)
    started = time.perf_counter()
    for name in names:
        delete(name)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=200)
    parser.add_argument("--mib", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total_mib = args.blobs * args.mib
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.blobs} blobs x {args.mib} MiB")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, moto_server() as moto:
        work = Path(tmp)
        fs = FilesystemBlobStore(work / "fs")
        s3 = S3BlobStore.from_settings(moto.settings(prefix="bench"))
        files = work / "plain"
        files.mkdir()

        def fs_put(name: str, data: bytes) -> None:
            (files / name).write_bytes(data)

        def fs_delete(name: str) -> None:
            os.unlink(files / name)

        import obstore

        def s3_put(name: str, data: bytes) -> None:
            obstore.put(s3.s3, f"plain/{name}", data)

        def s3_delete(name: str) -> None:
            obstore.delete(s3.s3, f"plain/{name}")

        for label, store, put, delete in (
            ("filesystem", fs, fs_put, fs_delete),
            ("s3 (moto)", s3, s3_put, s3_delete),
        ):
            gc_times, plain_times = [], []
            for r in range(args.rounds):
                gc_times.append(collect_rate(store, work, args.blobs, args.mib, f"{label}{r}"))
                plain_times.append(
                    plain_delete_seconds(put, delete, args.blobs, args.mib, f"p{label}{r}")
                )
            ratios = [p / g for g, p in zip(gc_times, plain_times, strict=True)]
            rows.append((label, gc_times, plain_times, ratios))
    print(f"{'backend':<12} {'gc MiB/s (median, min-max)':<30} {'plain deletes MiB/s':<26} ratio")
    for label, gc_times, plain_times, ratios in rows:

        def rate(times: list[float]) -> str:
            rates = [total_mib / t for t in times]
            return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"

        print(
            f"{label:<12} {rate(gc_times):<30} {rate(plain_times):<26} "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
