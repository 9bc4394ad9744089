"""What authentication costs: manifest GET requests/s at concurrency 64 (wrk) against the same
`moorage serve` data with auth off, and with htpasswd + policy on, sending a bearer token from
the token endpoint (what docker, podman and skopeo send) and Basic credentials (curl-style
clients; the bcrypt check is cached). Goal: each authenticated figure >= 80% of auth off.

    .venv/bin/python bench/auth_overhead.py [--seconds 10] [--rounds 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

import loadgen
import servers

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
USER, PASSWORD = "bench", "bench-password"
REPO = "bench/app"


def start(moorage_bin: str, workdir: Path, workers: int, extra: list[str]) -> servers.ManagedServer:
    server = servers.moorage_server(moorage_bin, workdir, workers)
    server.argv += extra
    server.start()
    return server


def seed(url: str, auth: str | None) -> str:
    """Push a config, a layer and manifest ``v1`` to ``REPO``; returns the layer's digest."""
    headers = {"Authorization": auth} if auth else {}
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"layer" * 100
    descriptors = []
    with httpx.Client(base_url=url, headers=headers) as client:
        for blob in (config, layer):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            client.post(
                f"/v2/{REPO}/blobs/uploads/?digest={digest}", content=blob
            ).raise_for_status()
            descriptors.append({"digest": digest, "size": len(blob)})
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descriptors[0]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descriptors[1]}],
        }
        client.put(
            f"/v2/{REPO}/manifests/v1",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        ).raise_for_status()
    return str(descriptors[1]["digest"])


def bearer_token(url: str, basic: str) -> str:
    response = httpx.get(
        f"{url}/token",
        params={"service": "moorage", "scope": f"repository:{REPO}:pull"},
        headers={"Authorization": basic},
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def measure(url: str, seconds: int, headers: dict[str, str]) -> loadgen.LoadResult:
    target = f"{url}/v2/{REPO}/manifests/v1"
    headers = {"Accept": OCI_MANIFEST, **headers}
    loadgen.run_wrk(target, seconds=2, connections=64, headers=headers)  # warm up
    return loadgen.run_wrk(target, seconds=seconds, connections=64, headers=headers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--moorage-bin", default=str(Path(sys.executable).parent / "moorage"))
    args = parser.parse_args()
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with tempfile.TemporaryDirectory(prefix="moorage-auth-bench-") as tmp:
        work = Path(tmp)
        htpasswd = work / "htpasswd"
        subprocess.run(
            ["htpasswd", "-c", "-b", "-B", str(htpasswd), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        # Both servers run side by side and the modes take turns, so that drift in the
        # machine's speed hits each mode alike; the median of the rounds is reported.
        rounds: dict[str, list[loadgen.LoadResult]] = {}
        with (
            start(args.moorage_bin, work / "off", args.workers, []) as off,
            start(args.moorage_bin, work / "on", args.workers, ["--htpasswd", str(htpasswd)]) as on,
        ):
            seed(off.url, None)
            seed(on.url, basic)
            token = bearer_token(on.url, basic)
            modes = {
                "auth off": (off.url, {}),
                # The same request bytes as the bearer mode, to a server that ignores them: what
                # the longer request costs wrk and the HTTP server, apart from checking it.
                "auth off, token sent": (off.url, {"Authorization": f"Bearer {token}"}),
                "bearer token": (on.url, {"Authorization": f"Bearer {token}"}),
                "basic (cached bcrypt)": (on.url, {"Authorization": basic}),
            }
            for _ in range(args.rounds):
                for mode, (url, headers) in modes.items():
                    rounds.setdefault(mode, []).append(measure(url, args.seconds, headers))
        results = {
            mode: sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]
            for mode, runs in rounds.items()
        }
    base = results["auth off"].requests_per_s
    print(f"manifest GET, c64, {args.seconds}s x {args.rounds} rounds, workers={args.workers}")
    print(f"{'mode':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs off':>7}")
    for mode, result in results.items():
        print(
            f"{mode:24} {result.requests_per_s:9.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
            f"{result.requests_per_s / base:7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
