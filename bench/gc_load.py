"""The effect of a garbage collection on a registry serving requests (issue 10's goal).

`moorage serve --workers 2` on a database of 100,000 blobs and 20,000 manifests (rows, built as
in gc_scale.py) with 10% of the manifests deleted and their grace passed: manifest GETs (wrk,
64 connections) and small blob pushes (a client loop, monolithic POSTs of 1 KiB) are measured
for a few seconds alone, then again while `moorage gc` collects the 10,000 links and 10,000
blobs in another process. Each round starts a server on a fresh copy of the database, so
rounds alternate alone / during gc and their ratios can be compared on a busy machine; the
goal is pushes (and GETs) during gc at >= 0.8 of their rate alone, p99 at most 1.2x ("alone"
is measured before and after the collection, and averaged).

Two kinds of load, reported apart:

- **closed loop** (wrk, 64 connections, and a push loop): each client sends its next request
  when the last is answered, so together they saturate both cores, and any CPU the collector
  takes becomes queueing for everyone. The throughput ratios come from here.
- **open loop** (``--open-loop FRACTION``, default 0.5; bench/openloop.py): GETs and pushes
  offered at fixed rates, each half of FRACTION of its closed-loop rate alone in the round (so
  together about FRACTION of the server's capacity), with latency counted from when each
  request was due. This is how a registry is loaded in practice (clients arrive
  on their own schedule, with headroom left); the p99 ratios here say what a collection costs
  a client of a registry that is not already at capacity.

``--variants LABEL=COMMAND ...`` alternates how the collector runs, round by round (e.g.
``nice10="nice -n 10 .venv/bin/moorage"``, or another checkout's ``moorage``), and prints the
medians per variant, so two collectors are compared under the same load of the machine.
``--server-variants LABEL=EXECUTABLE ...`` alternates whole builds instead (the server and the
collector both), for a change on the server's side.

    python bench/gc_load.py [--rounds 2] [--seconds 5] [--batch-time 1ms] [--max-duty 0.0125]
                            [--open-loop 0.5] [--variants LABEL=COMMAND ...]
                            [--server-variants LABEL=EXECUTABLE ...] [--trace DIR]

About 4-5 minutes with the defaults on a 2-core machine.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import math
import os
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import update

from gc_scale import GRACE, build
from loadgen import LoadResult, run_wrk
from moorage.metadata import schema as s
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from openloop import OpenLoopResult, Stream, open_loop
from servers import moorage_server


def prepare(data: Path, garbage: float = 0.1) -> None:
    """The database, with 10% of the manifests deleted and their reviews due."""
    data.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{data / 'moorage.db'}")
    upgrade(engine)
    store = SqlMetadataStore(engine)
    build(store, 100_000, 20_000, 100)
    with store._read() as conn:
        victims = conn.execute(
            s.manifests.select()
            .with_only_columns(s.manifests.c.repository_id, s.manifests.c.digest)
            .where(s.manifests.c.id % int(1 / garbage) == 0)
        ).all()
    for row in victims:
        store.delete_manifest(f"bench/r{row.repository_id - 1}", row.digest)
    with store._write() as conn:
        conn.execute(update(s.gc_reviews).values(touched_at=s.gc_reviews.c.touched_at - GRACE - 1))
    engine.dispose()


@dataclass(frozen=True)
class Pushes:
    per_s: float
    p50_ms: float
    p99_ms: float

    def __str__(self) -> str:
        return f"{self.per_s:.0f} pushes/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"


def push_loop(url: str, seconds: float, seed: int, log: Path | None = None) -> Pushes:
    """Monolithic pushes of new 1 KiB blobs, one after the other: rate, p50, p99.
    ``log``: where to write each push's start (``CLOCK_MONOTONIC``) and latency (``--trace``),
    as the open loop's logs are written (a closed loop's push is due when it starts)."""
    latencies = []
    starts = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        n = 0
        while time.monotonic() < deadline:
            data = hashlib.sha512(b"%d-%d" % (seed, n)).digest() * 16
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            starts.append(time.monotonic())
            started = time.perf_counter()
            response = http.post(f"/v2/bench/load/blobs/uploads/?digest={digest}", content=data)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
            n += 1
    if log is not None:
        with log.open("w") as out:
            for start, latency in zip(starts, latencies, strict=True):
                out.write(json.dumps({"s": "pushes", "t": start, "lat": latency}) + "\n")
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return Pushes(len(latencies) / seconds, p50, p99)


def measure(url: str, seconds: int, seed: int) -> tuple[LoadResult, Pushes]:
    pushes: list[Pushes] = []
    pusher = threading.Thread(target=lambda: pushes.append(push_loop(url, seconds, seed)))
    pusher.start()
    gets = run_wrk(f"{url}/v2/bench/r0/manifests/t0", seconds=seconds)
    pusher.join()
    return gets, pushes[0]


def _push_request(seed: int) -> Callable[[int], bytes]:
    def request(n: int) -> bytes:
        data = hashlib.sha512(b"open-%d-%d" % (seed, n)).digest() * 16
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return (
            f"POST /v2/bench/load/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data

    return request


_MANIFEST_GET = b"GET /v2/bench/r0/manifests/t0 HTTP/1.1\r\n\r\n"


#: Each open-loop stream's latencies (seconds) of one window, by stream name.
Latencies = dict[str, list[float]]


def measure_open(
    url: str, get_rate: float, push_rate: float, seconds: int, seed: int, log: Path | None
) -> tuple[dict[str, OpenLoopResult], Latencies]:
    """GETs and pushes at fixed rates (open loop), together, as measure() does closed: the
    summary per stream and every latency (for the pooled figures).
    ``log``: where to write each request's stream, due time and latency (``--trace``)."""
    streams = [
        Stream("GETs", get_rate, lambda _: _MANIFEST_GET, 200),
        Stream("pushes", push_rate, _push_request(seed), 201),
    ]
    results = open_loop(url, streams, seconds)
    if log is not None:
        with log.open("w") as out:
            for stream in streams:
                for due, latency in zip(stream.dues, stream.latencies, strict=True):
                    out.write(json.dumps({"s": stream.name, "t": due, "lat": latency}) + "\n")
    return results, {stream.name: stream.latencies for stream in streams}


def describe_open(results: dict[str, OpenLoopResult]) -> str:
    return "; ".join(f"{name} {result}" for name, result in results.items())


def describe(gets: LoadResult) -> str:
    return f"{gets.requests_per_s:.0f} GETs/s, p50 {gets.p50_ms:.1f} ms, p99 {gets.p99_ms:.1f} ms"


def collecting(database: Path, timeout: float = 60.0) -> None:
    """Wait until a collector holds the gc lease: it has started, and works from now on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            if conn.execute("SELECT 1 FROM job_leases WHERE name = 'gc'").fetchone():
                return
        time.sleep(0.05)
    raise TimeoutError("the collector did not start")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Round:
    """One round's ratios (during / alone), and its open-loop latencies by window ("alone":
    before and after the collection; "gc": during it), for the figures pooled over rounds."""

    ratios: dict[str, float]
    open_latencies: dict[str, Latencies]


def one_round(
    args: argparse.Namespace,
    template: Path,
    workdir: Path,
    n: int,
    label: str,
    collector: list[str],
    server_bin: str,
) -> Round:
    """A server on a fresh copy of the database: the loads alone, then during one collection
    (``collector``: the command that runs ``moorage``), then alone again. The open loop goes
    first in each window during the collection, so a long ``--open-seconds`` window still
    falls inside it."""
    shutil.copytree(template, workdir / "moorage-data")
    env = {"MOORAGE_GC__INTERVAL": "0"}
    if args.batch_time:
        env["MOORAGE_GC__BATCH_TIME"] = args.batch_time
    if args.max_duty:
        env["MOORAGE_GC__MAX_DUTY"] = args.max_duty
    server = moorage_server(server_bin, workdir, 2, env=env)
    data = workdir / "moorage-data"
    argv = [*collector, "gc", "--data-dir", str(data), "--grace", "0s", "--quick"]
    seed = 10 * n
    opened = args.open_loop > 0
    trace = None if args.trace is None else args.trace / f"round-{n + 1}"
    collector_env = dict(server.env or os.environ)
    if trace is not None:
        # Read by bench/gc_trace.py, when it is the variant's command.
        collector_env["GC_TRACE"] = f"{trace}.gc.jsonl"

    def log(window: str, loop: str = "open") -> Path | None:
        return None if trace is None else trace.with_name(f"{trace.name}.{loop}-{window}.jsonl")

    print(f"round {n + 1}: {shlex.join(collector)} ({load()})")
    if trace is not None:
        trace.with_name(f"{trace.name}.variant").write_text(label)
    with server:
        gets_before, mixed_before = measure(server.url, args.seconds, seed + 1)
        print(f"  GETs and pushes, alone:      {describe(gets_before)}; {mixed_before}")
        before = push_loop(server.url, args.seconds, seed + 2, log("before", "closed"))
        print(f"  pushes only, alone:          {before}")
        # The open loop offers a fixed share of what this server did alone, closed: half of
        # the share to GETs (of their rate beside the push loop) and half to pushes (of their
        # rate alone), so that together they use about that share of its capacity, with
        # enough pushes for a p99 (beside wrk, the push loop gets a few percent of it).
        rates = (
            gets_before.requests_per_s * args.open_loop / 2,
            before.per_s * args.open_loop / 2,
        )
        open_seconds = args.open_seconds or args.seconds
        if opened:
            open_before, lat_before = measure_open(
                server.url, *rates, open_seconds, seed + 7, log("before")
            )
            print(f"  open loop, alone:            {describe_open(open_before)}")
        started = time.monotonic()
        collector_process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, env=collector_env
        )
        collecting(data / "moorage.db")  # past the CLI's start-up (imports: ~1 s of CPU)
        if opened:
            open_gc, lat_gc = measure_open(server.url, *rates, open_seconds, seed + 8, log("gc"))
            print(f"  open loop, during gc:        {describe_open(open_gc)}")
        gets_gc, mixed_gc = measure(server.url, args.seconds, seed + 3)
        print(f"  GETs and pushes, during gc:  {describe(gets_gc)}; {mixed_gc}")
        during = push_loop(server.url, args.seconds, seed + 4, log("gc", "closed"))
        print(f"  pushes only, during gc:      {during}")
        running = collector_process.poll() is None
        out, _ = collector_process.communicate(timeout=600)
        seconds = time.monotonic() - started
        print(f"  gc: {seconds:.1f} s wall, {out.strip().splitlines()[-1]}")
        if not running:
            print("  (the collection ended before the measurements did: ratios understate it)")
        # Alone again, after: other work on the machine changes over a round, and "alone"
        # is the mean of before and after.
        after = push_loop(server.url, args.seconds, seed + 5, log("after", "closed"))
        gets_after, mixed_after = measure(server.url, args.seconds, seed + 6)
        print(f"  pushes only, alone after:    {after}")
        print(f"  GETs and pushes, after:      {describe(gets_after)}; {mixed_after}")
        if opened:
            open_after, lat_after = measure_open(
                server.url, *rates, open_seconds, seed + 9, log("after")
            )
            print(f"  open loop, alone after:      {describe_open(open_after)}")
    gets_alone = (gets_before.requests_per_s + gets_after.requests_per_s) / 2
    gets_p99_alone = (gets_before.p99_ms + gets_after.p99_ms) / 2
    ratios = {
        "GETs/s": gets_gc.requests_per_s / gets_alone,
        "GET p99": gets_gc.p99_ms / gets_p99_alone,
        "pushes/s": during.per_s / ((before.per_s + after.per_s) / 2),
        "push p99": during.p99_ms / ((before.p99_ms + after.p99_ms) / 2),
    }
    latencies: dict[str, Latencies] = {}
    if opened:
        for name, label in (("GETs", "GET"), ("pushes", "push")):
            alone = (open_before[name].p99_ms + open_after[name].p99_ms) / 2
            ratios[f"open {label} p99"] = open_gc[name].p99_ms / alone
        latencies = {
            "alone": {k: lat_before[k] + lat_after[k] for k in lat_before},
            "gc": lat_gc,
        }
    ratios["gc seconds"] = seconds
    print("  during / alone: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    return Round(ratios, latencies)


def _tail(values: list[float], keep: int) -> list[float]:
    return sorted(values, reverse=True)[:keep]


def _pooled_p99(tails: list[list[float]], total: int) -> float:
    """The p99 (as openloop's: the value at index int(0.99 n) in ascending order) of the
    union of several windows, from each window's largest values, in ms."""
    rank = total - 1 - int(total * 0.99)  # 0 = the largest
    merged = heapq.merge(*tails, reverse=True)
    return next(itertools.islice(merged, rank, None)) * 1000


def pooled(rounds: list[Round], stream: str, draws: int = 2000) -> str:
    """The p99 of every open-loop request of ``stream`` during the collections of these
    rounds against that of every one alone (before and after), pooled, with a bootstrap over
    rounds (rounds drawn with replacement, so a round's own noise moves the interval as it
    would move a re-run): one round's p99 of a few milliseconds over a few thousand requests
    moves by more than the 20% it is judged against; pooling many rounds' requests does not."""
    windows = ("alone", "gc")
    rounds = [r for r in rounds if r.open_latencies]
    if not rounds:
        return f"{stream}: no open-loop rounds"
    counts = [{w: len(r.open_latencies[w][stream]) for w in windows} for r in rounds]
    # Each round may be drawn up to len(rounds) times, so keeping each window's 1% of that
    # many rounds' requests (its largest values) is enough for any draw's pooled p99.
    keep = {w: math.ceil(0.01 * len(rounds) * max(c[w] for c in counts)) + 2 for w in windows}
    tails = [{w: _tail(r.open_latencies[w][stream], keep[w]) for w in windows} for r in rounds]

    def p99s(picks: list[int]) -> tuple[float, float]:
        alone, gc = (
            _pooled_p99([tails[i][w] for i in picks], sum(counts[i][w] for i in picks))
            for w in windows
        )
        return alone, gc

    everything = list(range(len(rounds)))
    alone, gc = p99s(everything)
    rng = random.Random(0)
    ratios = []
    for _ in range(draws):
        a, g = p99s(rng.choices(everything, k=len(rounds)))
        ratios.append(g / a)
    ratios.sort()
    low, high = ratios[int(draws * 0.05)], ratios[int(draws * 0.95) - 1]
    n_alone = sum(c["alone"] for c in counts)
    n_gc = sum(c["gc"] for c in counts)
    return (
        f"{stream} p99 alone {alone:.2f} ms (n={n_alone:,}), during gc {gc:.2f} ms "
        f"(n={n_gc:,}): {gc / alone:.2f}x (90% bootstrap over rounds {low:.2f}-{high:.2f})"
    )


def summary(rounds: list[dict[str, float]]) -> str:
    """Median (and range) of each ratio over the rounds."""
    return ", ".join(
        f"{k} {statistics.median(r[k] for r in rounds):.2f}"
        + (
            f" ({min(r[k] for r in rounds):.2f}-{max(r[k] for r in rounds):.2f})"
            if len(rounds) > 1
            else ""
        )
        for k in rounds[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--batch-time", help="gc.batch_time for the collection (default 1ms on SQLite)"
    )
    parser.add_argument(
        "--max-duty", help="gc.max_duty for the collection (default 0.0125 on SQLite)"
    )
    parser.add_argument(
        "--open-loop",
        type=float,
        default=0.5,
        help="also offer GETs and pushes open loop at this fraction of the round's closed-loop "
        "rates alone (0: closed loop only)",
    )
    parser.add_argument(
        "--open-seconds",
        type=int,
        help="length of each open-loop window (default: --seconds); the one during the "
        "collection starts as soon as the collector holds its lease",
    )
    parser.add_argument("--moorage", default=str(Path(".venv/bin/moorage").resolve()))
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="LABEL=COMMAND",
        help="collectors to alternate round by round (COMMAND runs moorage, e.g. "
        "'nice -n 10 .venv/bin/moorage'); default: --moorage",
    )
    parser.add_argument(
        "--server-variants",
        nargs="+",
        metavar="LABEL=EXECUTABLE",
        help="builds to alternate round by round, server and collector both (EXECUTABLE: a "
        "moorage, e.g. another checkout's .venv/bin/moorage)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="write each open-loop request's due time and latency here, per round and window "
        "(and each push of the closed loop's pushes-only windows), "
        "and the collector's events (with bench/gc_trace.py as the variant's command); "
        "bench/gc_trace_report.py reads them",
    )
    args = parser.parse_args()
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
    if args.variants and args.server_variants:
        parser.error("--variants and --server-variants: one or the other")
    # (label, collector's command, server's executable) per variant.
    variants = [
        (label, command, args.moorage)
        for label, command in (
            v.split("=", 1) for v in args.variants or [f"default={args.moorage}"]
        )
    ]
    if args.server_variants:
        variants = [
            (label, executable, executable)
            for label, executable in (v.split("=", 1) for v in args.server_variants)
        ]
    results: dict[str, list[Round]] = {label: [] for label, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="moorage-gc-load-") as tmp:
        template = Path(tmp) / "template"
        started = time.monotonic()
        prepare(template)
        print(f"prepared in {time.monotonic() - started:.0f} s")
        for n in range(args.rounds):
            label, command, server_bin = variants[n % len(variants)]
            workdir = Path(tmp) / f"round-{n}"
            results[label].append(
                one_round(args, template, workdir, n, label, shlex.split(command), server_bin)
            )
    for label, rounds in results.items():
        if rounds:
            ratios = [r.ratios for r in rounds]
            print(f"median during / alone, {label} ({len(rounds)} rounds): {summary(ratios)}")
            if args.open_loop > 0:
                for stream in ("GETs", "pushes"):
                    print(f"  pooled open loop, {label}: {pooled(rounds, stream)}")
    print(load())


if __name__ == "__main__":
    main()
