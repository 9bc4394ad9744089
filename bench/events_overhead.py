"""What events cost a push when the webhook endpoint is down: manifest pushes/s (each a new
manifest and tag, concurrency 8) against `moorage serve` with events off, and with one endpoint
that takes every event, and with one that never answers (a blackholed address, so every
delivery attempt waits for its timeout: the worst kind of down). Goal: endpoint down >= 95% of
events off (and of endpoint up).

    .venv/bin/python bench/events_overhead.py [--seconds 5] [--rounds 5] [--workers 2]

The servers run side by side and take turns round after round, each left to finish the
background work of its round (delivering its backlog to the sink) before the next one is
measured; the median round is reported.
The machine is shared: figures taken while other work runs are noise, not results (the load
average is printed first for that reason).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

import servers

GOAL = 0.95
REPO = "bench/events"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
DOWN_ENDPOINT = [{"url": "http://192.0.2.1:9/hook", "timeout": 5}]  # TEST-NET-1: no answer
SINK_PORT = servers.free_port()
UP_ENDPOINT = [{"url": f"http://127.0.0.1:{SINK_PORT}/hook"}]
ALLOW = {"MOORAGE_EVENTS__ALLOW_PRIVATE_NETWORKS": "true"}  # so they are tried, not refused
MODES: dict[str, dict[str, str]] = {
    "events off": {},
    "endpoint up": {"MOORAGE_EVENTS__ENDPOINTS": json.dumps(UP_ENDPOINT), **ALLOW},
    "endpoint down": {"MOORAGE_EVENTS__ENDPOINTS": json.dumps(DOWN_ENDPOINT), **ALLOW},
}


class _Sink(BaseHTTPRequestHandler):
    """The "up" endpoint: takes every event, answers 204."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def start(
    moorage_bin: str, workdir: Path, workers: int, env: dict[str, str]
) -> servers.ManagedServer:
    server = servers.moorage_server(moorage_bin, workdir, workers)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    server.env = {**inherited, "MOORAGE_LOG__LEVEL": "warning", **env}
    server.start()
    digest = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
    httpx.post(
        f"{server.url}/v2/{REPO}/blobs/uploads/?digest={digest}", content=CONFIG
    ).raise_for_status()
    return server


def manifest(n: int, run: str) -> bytes:
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:" + hashlib.sha256(CONFIG).hexdigest(),
        "size": len(CONFIG),
    }
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [],
            "annotations": {"n": f"{run}-{n}"},
        }
    ).encode()


def measure(server: servers.ManagedServer, seconds: float, run: str) -> float:
    """Manifest pushes per second at concurrency 8."""
    counter = iter(range(10**9))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def pusher() -> int:
        done = 0
        with httpx.Client(base_url=server.url) as client:
            while time.monotonic() < deadline:
                with lock:
                    n = next(counter)
                response = client.put(
                    f"/v2/{REPO}/manifests/{run}-{n}",
                    content=manifest(n, run),
                    headers={"Content-Type": OCI_MANIFEST},
                )
                response.raise_for_status()
                done += 1
        return done

    start_time = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(lambda _: pusher(), range(8)))
    return total / (time.monotonic() - start_time)


def quiesce(server: servers.ManagedServer, mode: str) -> None:
    """Let the server finish the background work its round left (delivering to the sink,
    dispatching), so that it does not run during the next mode's round."""
    if mode == "endpoint up":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            checks = httpx.get(f"{server.url}/readyz").json()["checks"]
            if checks["events"]["backlog"] == 0:
                break
            time.sleep(0.5)
    time.sleep(2)  # a dispatch (once a second) and the audit writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--moorage-bin", default=str(Path(sys.executable).parent / "moorage"))
    args = parser.parse_args()
    one, five, _ = os.getloadavg()
    print(f"load average before the run: {one:.2f} (1 min), {five:.2f} (5 min) on "
          f"{os.cpu_count()} cores")  # fmt: skip
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    sink = ThreadingHTTPServer(("127.0.0.1", SINK_PORT), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="moorage-events-bench-") as tmp:
        started = []
        try:
            for index, env in enumerate(MODES.values()):
                started.append(start(args.moorage_bin, Path(tmp) / str(index), args.workers, env))
            for round_number in range(args.rounds):
                for mode, server in zip(MODES, started, strict=True):
                    rates[mode].append(measure(server, args.seconds, f"r{round_number}"))
                    quiesce(server, mode)
            backlog = httpx.get(f"{started[2].url}/readyz").json()["checks"]["events"]["backlog"]
        finally:
            for server in started:
                server.stop()
            sink.shutdown()
    base = statistics.median(rates["events off"])
    print(f"manifest pushes, c8, {args.seconds:g}s x {args.rounds} rounds, workers={args.workers}")
    for mode in MODES:
        rate = statistics.median(rates[mode])
        print(f"{mode:14} {rate:8.1f} pushes/s  {rate / base:5.2f} of events off")
    down = statistics.median(rates["endpoint down"])
    for baseline in ("events off", "endpoint up"):
        ratio = down / statistics.median(rates[baseline])
        verdict = "meets" if ratio >= GOAL else "misses"
        print(f"endpoint down: {ratio:.2f} of {baseline} ({verdict} the goal {GOAL:.2f})")
    print(f"undelivered events at the end (endpoint down): {backlog}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
