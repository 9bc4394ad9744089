"""Reference figures for this machine: the big source file, its digests, raw disk write speed,
sha256 speed, and how fast the benchmark client can source and sink bytes by itself."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ociclient import BlobSource, Registry

MiB = 1 << 20
IO_CHUNK = 8 * MiB
SUFFIX_LEN = 64


def write_random_file(path: Path, size: int) -> None:
    """Fill `path` with `size` random bytes (not timed)."""
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, IO_CHUNK)
            f.write(os.urandom(n))
            left -= n


def make_blobs(path: Path, size: int, names: list[str]) -> tuple[dict[str, BlobSource], float]:
    """One distinct blob of `size` bytes per name, all sharing `path` except their last
    SUFFIX_LEN bytes, so no registry can dedupe one push against another. The shared part
    is hashed once and the hash state copied per blob. Returns the blobs and the seconds
    the shared part took to hash."""
    if size <= SUFFIX_LEN:
        raise ValueError("blob size too small")
    file_part = size - SUFFIX_LEN
    h = hashlib.sha256()
    buf = bytearray(IO_CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        left = file_part
        while left > 0:
            n = f.readinto(view[: min(left, IO_CHUNK)])
            if not n:
                raise RuntimeError(f"{path} is shorter than {file_part} bytes")
            h.update(view[:n])
            left -= n
    hashed = time.perf_counter() - t0
    blobs = {}
    for name in names:
        suffix = os.urandom(SUFFIX_LEN)
        hh = h.copy()
        hh.update(suffix)
        blobs[name] = BlobSource(
            path=path, size=size, suffix=suffix, digest="sha256:" + hh.hexdigest()
        )
    return blobs, hashed


def disk_write_mib_s(src: Path, dst: Path) -> float:
    """dd-like copy of `src` (already in the page cache) to `dst` with 8 MiB writes and an
    fsync at the end; MiB/s including the fsync. `dst` is removed afterwards."""
    os.sync()
    size = src.stat().st_size
    buf = bytearray(IO_CHUNK)
    view = memoryview(buf)
    try:
        with src.open("rb", buffering=0) as fin:
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                t0 = time.perf_counter()
                while True:
                    n = fin.readinto(view)
                    if not n:
                        break
                    os.write(fd, view[:n])
                os.fsync(fd)
                seconds = time.perf_counter() - t0
            finally:
                os.close(fd)
    finally:
        dst.unlink(missing_ok=True)
    return size / MiB / seconds


def sha256_mib_s(total: int) -> float:
    """sha256 over `total` bytes of an in-memory buffer in 1 MiB updates."""
    data = memoryview(os.urandom(16 * MiB))
    h = hashlib.sha256()
    t0 = time.perf_counter()
    done = 0
    while done < total:
        for off in range(0, len(data), MiB):
            h.update(data[off : off + MiB])
        done += len(data)
    h.hexdigest()
    return done / MiB / (time.perf_counter() - t0)


@dataclass
class ClientCapacity:
    source_mib_s: float  # monolithic upload into a discarding sink
    chunked_source_mib_s: float  # streamed (chunked) PATCH into the sink
    sink_mib_s: float  # GET from the sink, bytes discarded


def client_capacity(blob: BlobSource) -> ClientCapacity:
    """Run the benchmark's own transfer code against bench/sink.py (a separate process)."""
    sink = Path(__file__).with_name("sink.py")
    proc = subprocess.Popen(
        [sys.executable, str(sink), "--get-file", str(blob.path)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        reg = Registry(f"http://127.0.0.1:{port}")
        t0 = time.perf_counter()
        reg.push_monolithic("sink", blob, single_post=True)
        mono = blob.size / MiB / (time.perf_counter() - t0)
        conn = reg.connect()
        try:
            t0 = time.perf_counter()
            resp = reg.send_blob(
                conn, "PATCH", "/v2/sink/blobs/uploads/x", blob, 0, blob.size, chunked=True
            )
            chunked = blob.size / MiB / (time.perf_counter() - t0)
            reg.expect(resp, 201, "sink PATCH")
        finally:
            conn.close()
        t0 = time.perf_counter()
        got = reg.pull("sink", blob.digest)
        pull = got / MiB / (time.perf_counter() - t0)
        return ClientCapacity(mono, chunked, pull)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
