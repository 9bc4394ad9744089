"""Push and pull of 256 MiB through a real `moorage serve` whose blobs are in S3 (a moto server),
against a direct obstore streaming put / get of the same bytes to the same moto server in the
same run. Goal: >= 0.8 of direct, with the server's memory flat. Three push paths: monolithic
(`POST ?digest=`), one streamed PATCH then PUT (what podman and skopeo send), and 16 MiB
chunks. The server's peak RSS (VmHWM of its processes) is read before and after.

    .venv/bin/python bench/s3_http.py [--mib 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import obstore
from obstore.store import S3Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support_s3 import ACCESS_KEY, REGION, SECRET_KEY, moto_server

import servers

MIB = 1024 * 1024
BLOCKS = [os.urandom(MIB) for _ in range(8)]
CHUNK = 16 * MIB


def chunks(mib: int, salt: bytes) -> Iterator[bytes]:
    for index in range(mib):
        yield BLOCKS[index % len(BLOCKS)] if index else salt + BLOCKS[0][len(salt) :]


def digest_of(mib: int, salt: bytes) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks(mib, salt):
        hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def timed(action: Callable[[], None]) -> float:
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


def push_monolithic(client: httpx.Client, repo: str, mib: int, salt: bytes) -> None:
    digest = digest_of(mib, salt)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/?digest={digest}",
        content=chunks(mib, salt),
        headers={"Content-Length": str(mib * MIB)},
    )
    assert response.status_code == 201, response.text


def push_streamed(client: httpx.Client, repo: str, mib: int, salt: bytes) -> None:
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    location = start.headers["location"]
    patched = client.patch(location, content=chunks(mib, salt))
    assert patched.status_code == 202, patched.text
    done = client.put(patched.headers["location"], params={"digest": digest_of(mib, salt)})
    assert done.status_code == 201, done.text


def push_chunked(client: httpx.Client, repo: str, mib: int, salt: bytes) -> None:
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    data = chunks(mib, salt)
    offset = 0
    while offset < mib * MIB:
        piece = b"".join(next(data) for _ in range(CHUNK // MIB))
        response = client.patch(
            location,
            content=piece,
            headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
        )
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        offset += len(piece)
    done = client.put(location, params={"digest": digest_of(mib, salt)})
    assert done.status_code == 201, done.text


def pull(client: httpx.Client, repo: str, digest: str) -> None:
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
        assert response.status_code == 200
        for _ in response.iter_bytes(MIB):
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--moorage-bin", default=str(Path(sys.executable).parent / "moorage"))
    args = parser.parse_args()
    mib: int = args.mib
    best: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)
        print(f"  {name:<22} {mib / seconds:7.1f} MiB/s")

    with moto_server() as moto, tempfile.TemporaryDirectory(prefix="moorage-s3-http-") as tmp:
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
        with server, httpx.Client(base_url=server.url, timeout=600) as client:
            idle_rss = server_peak_rss_mib(server.port)
            print(f"{mib} MiB per transfer; server peak RSS at start {idle_rss:.0f} MiB")
            for round_number in range(1, args.rounds + 1):
                print(f"round {round_number}")
                salt = f"round-{round_number}".encode()
                key = f"direct/{round_number}"

                def direct_put(key: str = key, salt: bytes = salt) -> None:
                    obstore.put(store, key, chunks(mib, salt))

                def direct_get(key: str = key) -> None:
                    for _ in obstore.get(store, key):
                        pass

                record("direct put", timed(direct_put))
                record("direct get", timed(direct_get))
                for name, push in (
                    ("push monolithic", push_monolithic),
                    ("push streamed PATCH", push_streamed),
                    ("push 16 MiB chunks", push_chunked),
                ):
                    own = salt + name.encode()
                    record(name, timed(lambda: push(client, f"b/{round_number}", mib, own)))  # noqa: B023
                digest = digest_of(mib, salt + b"push monolithic")
                record("pull", timed(lambda: pull(client, f"b/{round_number}", digest)))  # noqa: B023
            peak_rss = server_peak_rss_mib(server.port)
    print(f"server peak RSS: {idle_rss:.0f} MiB at start, {peak_rss:.0f} MiB after all transfers")
    for name, reference in (
        ("push monolithic", "direct put"),
        ("push streamed PATCH", "direct put"),
        ("push 16 MiB chunks", "direct put"),
        ("pull", "direct get"),
    ):
        ratio = best[reference] / best[name]
        ours, theirs = mib / best[name], mib / best[reference]
        print(f"{name:<22} {ours:7.1f} MiB/s vs {reference} {theirs:7.1f}: {ratio:.2f}")


if __name__ == "__main__":
    main()
