"""Push and pull of 256 MiB through a real `moorage serve` whose blobs are in S3 (a moto server),
against a direct obstore streaming put / get of the same bytes to the same moto server in the
same run. Goal: >= 0.8 of direct, with the server's memory flat.

Three push paths: monolithic (`POST ?digest=`), one streamed PATCH then PUT (what podman,
skopeo and docker send), and 16 MiB chunks; two pulls: redirects off (the bytes pass through
Moorage) and on (a 307 to a pre-signed URL, then the bytes come from S3: a second server on the
same database and bucket answers those). Moorage is driven with curl, streaming
from and to a file in /dev/shm: real clients (docker, podman, containerd) are compiled, and a
Python HTTP client spent about 4x curl's CPU on the same two cores moto and the server need,
which measured the client rather than the server. The direct reference reads and writes the
same file. Each round runs every transfer once, in the same order; the ratio reported is the
median over rounds of each round's own ratio (moto's speed drifts between rounds). The server's
peak RSS (VmHWM of its processes) is read before and after.

    .venv/bin/python bench/s3_http.py [--mib 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import obstore
from obstore.store import S3Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support_s3 import ACCESS_KEY, REGION, SECRET_KEY, moto_server

import servers

MIB = 1024 * 1024
CHUNK = 16 * MIB


def write_blob(path: Path, mib: int, salt: bytes) -> str:
    """A file of ``mib`` MiB of random bytes; returns its digest."""
    hasher = hashlib.sha256()
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for index in range(mib):
            data = (salt + block[len(salt) :]) if index == 0 else block
            out.write(data)
            hasher.update(data)
            block = block[1:] + block[:1]  # no two MiB alike
    return f"sha256:{hasher.hexdigest()}"


def curl(*args: str, body: Path | None = None) -> dict[str, str]:
    """Run curl (streaming ``body`` from its file, if given); returns the final response's
    headers (lower-case names)."""
    upload = []
    if body is not None:  # from stdin: `-T FILE` would append FILE's name to a URL ending in /
        upload = ["-T", "-", "-H", f"Content-Length: {body.stat().st_size}"]
    with body.open("rb") if body is not None else open(os.devnull, "rb") as stdin:
        result = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-D", "-", *upload, *args],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)}: {result.stderr}{result.stdout}")
    headers: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def server_peak_rss_mib(port: int) -> float:
    """The largest VmHWM among the server's processes (main and workers)."""
    pids = subprocess.run(
        ["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True, check=False
    ).stdout.split()
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


class Pushes:
    """The three ways a client pushes one blob file to Moorage."""

    def __init__(self, base: str, chunk_dir: Path) -> None:
        self.base = base
        self.chunk_dir = chunk_dir

    def monolithic(self, repo: str, path: Path, digest: str) -> None:
        curl("-X", "POST", f"{self.base}/v2/{repo}/blobs/uploads/?digest={digest}", body=path)

    def streamed(self, repo: str, path: Path, digest: str) -> None:
        location = self._start(repo)
        location = curl("-X", "PATCH", location, body=path)["location"]
        curl("-X", "PUT", f"{self._absolute(location)}&digest={digest}")

    def chunked(self, repo: str, path: Path, digest: str) -> None:
        location = self._start(repo)
        offset = 0
        for piece in sorted(self.chunk_dir.iterdir()):
            size = piece.stat().st_size
            headers = ["-H", f"Content-Range: {offset}-{offset + size - 1}"]
            location = self._absolute(
                curl("-X", "PATCH", *headers, location, body=piece)["location"]
            )
            offset += size
        curl("-X", "PUT", f"{location}&digest={digest}")

    def _start(self, repo: str) -> str:
        return self._absolute(
            curl("-X", "POST", f"{self.base}/v2/{repo}/blobs/uploads/")["location"]
        )

    def _absolute(self, location: str) -> str:
        absolute = location if location.startswith("http") else self.base + location
        return absolute if "?" in absolute else absolute + "?"


def split(path: Path, into: Path) -> None:
    into.mkdir(exist_ok=True)
    with path.open("rb") as source:
        index = 0
        while block := source.read(CHUNK):
            (into / f"{index:05d}").write_bytes(block)
            index += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--moorage-bin", default=str(Path(sys.executable).parent / "moorage"))
    args = parser.parse_args()
    mib: int = args.mib
    if shutil.which("curl") is None:
        raise SystemExit("this benchmark drives Moorage with curl: apt-get install curl")
    ratios: dict[str, list[float]] = {}
    speeds: dict[str, list[float]] = {}

    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with (
        moto_server() as moto,
        tempfile.TemporaryDirectory(prefix="moorage-s3-http-") as tmp,
        tempfile.TemporaryDirectory(prefix="moorage-s3-blob-", dir=shm) as blobs,
    ):
        store = S3Store(
            moto.bucket,
            endpoint=moto.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            client_options={"allow_http": True},
        )
        server = servers.moorage_server(args.moorage_bin, Path(tmp), 1)
        server.env = {
            **os.environ,
            "SETTINGS_FLAVOR": "s3",
            "AWS_BUCKET": moto.bucket,
            "STORAGE_PATH": "/bench",
            "AWS_REGION": REGION,
            "AWS_KEY": ACCESS_KEY,
            "AWS_SECRET": SECRET_KEY,
            "AWS_ENDPOINT_URL": moto.endpoint,
        }
        # A second server on the same database and bucket, with redirects on (the classic
        # STORAGE_REDIRECT=true): its pulls are 307s to pre-signed URLs, fetched from moto.
        redirecting = servers.moorage_server(args.moorage_bin, Path(tmp), 1)
        redirecting.env = {**server.env, "STORAGE_REDIRECT": "true"}
        with server, redirecting:
            pushes = Pushes(server.url, Path(blobs) / "chunks")
            idle_rss = server_peak_rss_mib(server.port)
            print(f"{mib} MiB per transfer; server peak RSS at start {idle_rss:.0f} MiB")
            for round_number in range(1, args.rounds + 1):
                # (measurement, reference, seconds, reference seconds) for this round
                pairs: list[tuple[str, str, float, float]] = []
                repo = f"b/{round_number}"
                blob = Path(blobs) / "blob"
                for name, push in (
                    ("push monolithic", pushes.monolithic),
                    ("push streamed PATCH", pushes.streamed),
                    ("push 16 MiB chunks", pushes.chunked),
                ):
                    digest = write_blob(blob, mib, f"{round_number}-{name}".encode())
                    shutil.rmtree(pushes.chunk_dir, ignore_errors=True)
                    split(blob, pushes.chunk_dir)
                    key = f"direct/{round_number}/{name}"
                    direct = timed(lambda: obstore.put(store, key, blob))  # noqa: B023
                    pushed = timed(lambda: push(repo, blob, digest))  # noqa: B023
                    pairs.append((name, "direct put", pushed, direct))
                    if name == "push streamed PATCH":  # what podman and docker leave behind
                        pulled_key, pulled_digest = key, digest
                direct = timed(lambda: [None for _ in obstore.get(store, pulled_key)])  # noqa: B023
                pulled = timed(
                    lambda: curl(f"{server.url}/v2/{repo}/blobs/{pulled_digest}")  # noqa: B023
                )
                pairs.append(("pull", "direct get", pulled, direct))
                redirected = timed(
                    lambda: curl("-L", f"{redirecting.url}/v2/{repo}/blobs/{pulled_digest}")  # noqa: B023
                )
                pairs.append(("pull, redirect on", "direct get", redirected, direct))
                line = []
                for name, reference, ours, theirs in pairs:
                    ratios.setdefault(name, []).append(theirs / ours)
                    speeds.setdefault(name, []).append(mib / ours)
                    speeds.setdefault(reference, []).append(mib / theirs)
                    line.append(f"{name} {theirs / ours:.2f}")
                print(f"round {round_number}: " + ", ".join(line))
            peak_rss = server_peak_rss_mib(server.port)
    print(f"server peak RSS: {idle_rss:.0f} MiB at start, {peak_rss:.0f} MiB after all transfers")
    for name, reference in (
        ("push monolithic", "direct put"),
        ("push streamed PATCH", "direct put"),
        ("push 16 MiB chunks", "direct put"),
        ("pull", "direct get"),
        ("pull, redirect on", "direct get"),
    ):
        ours = statistics.median(speeds[name])
        theirs = statistics.median(speeds[reference])
        print(
            f"{name:<22} {ours:7.1f} MiB/s vs {reference} {theirs:7.1f}: "
            f"median ratio {statistics.median(ratios[name]):.2f} "
            f"(rounds {min(ratios[name]):.2f}-{max(ratios[name]):.2f})"
        )


if __name__ == "__main__":
    main()
