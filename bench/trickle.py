"""Do trickling clients stop normal pulls? (issue 9, item 4)

Starts `moorage serve --workers 2`, measures manifest and blob GETs (wrk, concurrency 64) on
their own, then again while N clients (default 200) each hold a request whose body arrives one
byte every PAUSE seconds: half are PATCHes to an upload session, half manifest PUTs. With PAUSE
below `limits.body_idle_timeout_seconds` (the default: 5 s against 30 s) the trickles are never
cut, which is the worst case for the pulls; with PAUSE above it every trickle must be answered
408 after the idle timeout, which the script counts.

    .venv/bin/python bench/trickle.py [--clients 200] [--pause 5] [--idle-timeout 30]
                                      [--seconds 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import loadgen
import servers
from auth_overhead import OCI_MANIFEST, REPO, seed

TRICKLE_REPO = "bench/trickle"
# What each trickling request declares: far more than it will ever send.
DECLARED_BYTES = 1024 * 1024


@dataclass
class Trickles:
    """The trickling clients' outcomes, shared with the thread that runs them."""

    connected: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    answer_after_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)


def _heads(url: str, clients: int) -> list[bytes]:
    """Request heads for the trickles: half PATCHes to fresh upload sessions, half manifest
    PUTs."""
    heads = []
    with httpx.Client(base_url=url) as client:
        for i in range(clients):
            if i % 2 == 0:
                location = client.post(f"/v2/{TRICKLE_REPO}/blobs/uploads/").headers["location"]
                line = f"PATCH {location} HTTP/1.1"
                extra = f"Content-Range: 0-{DECLARED_BYTES - 1}\r\n"
            else:
                line = f"PUT /v2/{TRICKLE_REPO}/manifests/t{i} HTTP/1.1"
                extra = f"Content-Type: {OCI_MANIFEST}\r\n"
            heads.append(
                f"{line}\r\nHost: bench\r\nContent-Length: {DECLARED_BYTES}\r\n{extra}\r\n".encode()
            )
    return heads


async def _trickle(port: int, head: bytes, pause: float, state: Trickles) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as error:
        state.errors[type(error).__name__] += 1
        return
    writer.write(head + b"x")
    state.connected += 1
    started = time.monotonic()
    try:
        while not state.stop.is_set():
            try:
                answer = await asyncio.wait_for(reader.read(4096), pause)
            except TimeoutError:
                writer.write(b"x")
                await writer.drain()
                continue
            if answer:
                state.answers[int(answer.split(b" ", 2)[1])] += 1
                state.answer_after_s.append(time.monotonic() - started)
            else:
                state.errors["closed without an answer"] += 1
            return
    except OSError as error:
        state.errors[type(error).__name__] += 1
    finally:
        writer.close()


def _run_trickles(port: int, heads: list[bytes], pause: float, state: Trickles) -> None:
    async def all_of_them() -> None:
        await asyncio.gather(*(_trickle(port, head, pause, state) for head in heads))

    asyncio.run(all_of_them())


def _pulls(url: str, seconds: int, blob: str) -> dict[str, loadgen.LoadResult]:
    manifest = f"{url}/v2/{REPO}/manifests/v1"
    return {
        "manifest GET": loadgen.run_wrk(
            manifest, seconds=seconds, headers={"Accept": OCI_MANIFEST}
        ),
        "blob GET": loadgen.run_wrk(f"{url}/v2/{REPO}/blobs/{blob}", seconds=seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between two bytes")
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--moorage-bin", default=str(Path(sys.executable).parent / "moorage"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="moorage-trickle-") as tmp:
        server = servers.moorage_server(args.moorage_bin, Path(tmp), args.workers)
        server.env = {
            **os.environ,
            "MOORAGE_LIMITS__BODY_IDLE_TIMEOUT_SECONDS": str(args.idle_timeout),
        }
        server.start()
        try:
            blob = seed(server.url, None)
            loadgen.run_wrk(f"{server.url}/v2/", seconds=2)  # warm up
            alone = _pulls(server.url, args.seconds, blob)

            state = Trickles()
            heads = _heads(server.url, args.clients)
            runner = threading.Thread(
                target=_run_trickles, args=(server.port, heads, args.pause, state)
            )
            runner.start()
            deadline = time.monotonic() + 30
            while state.connected < args.clients and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(min(args.pause, 5.0))  # every trickle has sent a byte or two
            trickling = _pulls(server.url, args.seconds, blob)
            open_during = args.clients - sum(state.answers.values()) - sum(state.errors.values())
            if args.pause > args.idle_timeout:  # let the idle timeout answer every trickle
                end = time.monotonic() + args.idle_timeout + args.pause + 10
                while sum(state.answers.values()) < args.clients and time.monotonic() < end:
                    time.sleep(0.5)
            state.stop.set()
            runner.join()
        finally:
            server.stop()

    print(
        f"{args.clients} trickling clients, a byte every {args.pause:g} s, idle timeout "
        f"{args.idle_timeout:g} s, {args.workers} workers, wrk -c64 {args.seconds} s per run"
    )
    print(
        f"{'':14} {'alone req/s':>12} {'p99 ms':>8} {'trickling req/s':>16} {'p99 ms':>8}"
        f" {'ratio':>6} {'non-2xx':>8}"
    )
    for name, before in alone.items():
        during = trickling[name]
        print(
            f"{name:14} {before.requests_per_s:12.0f} {before.p99_ms:8.1f}"
            f" {during.requests_per_s:16.0f} {during.p99_ms:8.1f}"
            f" {during.requests_per_s / before.requests_per_s:6.2f} {during.non_2xx:8d}"
        )
    print(f"trickles connected: {state.connected}; still open during the pulls: {open_during}")
    if state.answers:
        after = sorted(state.answer_after_s)
        print(f"answers: {dict(state.answers)}, after {after[0]:.1f}-{after[-1]:.1f} s")
    if state.errors:
        print(f"errors: {dict(state.errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
