#!/usr/bin/env python3
"""Push on the paths real clients use, against distribution in the same run, alternated.

    .venv/bin/python bench/push.py                        # 1 GiB, 5 rounds, moorage --workers 2
    .venv/bin/python bench/push.py --quick                # 64 MiB, 2 rounds, 2 s load runs
    .venv/bin/python bench/push.py --phases small_put,small_patch --rounds 7 --syscalls

`moorage serve --workers 2` and Debian's docker-registry (distribution 2.8) run side by side on
loopback; each round measures every figure once on each, the registry that goes first swapping
every round (Moorage, distribution, then distribution, Moorage, ...):

- small_put: distinct 4 KiB blobs from 16 keep-alive connections, POST then PUT ?digest= with
  the body (what skopeo and containerd send for a small blob);
- small_patch: the same with POST, PATCH with the body, PUT ?digest= (docker, podman);
- big_put: one blob (1 GiB) as POST then PUT ?digest= with the whole body;
- big_stream: POST, one PATCH with a chunked body and no Content-Range, PUT (docker, podman);
- big_chunked: POST, 16 MiB PATCHes with Content-Range, PUT (OCI chunked uploads).

Each figure is printed as the median and spread over the rounds, with the median and spread of
each round's ratio Moorage / distribution. ``--syscalls`` counts each server's fsync-family
calls per 4 KiB push with strace (counts, never speeds). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rawaio
import servers
from counters import Counters, summary
from ociclient import BlobSource, Registry
from page_touch import hand_back_warm
from pull import parse_strace_summary
from refspeed import make_blobs, write_random_file
from report import median_text, spread_text
from run import default_moorage_bin, other_cpu_busy

MiB = 1 << 20
GiB = 1 << 30
SMALL = 4096
CONCURRENCY = 16
REPO = "bench/push"
SYNC_CALLS = "fsync,fdatasync,sync_file_range,rename,renameat,renameat2"


@dataclass(frozen=True)
class Phase:
    key: str
    label: str
    unit: str  # "blobs/s" or "MiB/s"


PHASES = (
    Phase("small_put", "4 KiB c16: POST + PUT with body", "blobs/s"),
    Phase("small_patch", "4 KiB c16: POST + PATCH + PUT", "blobs/s"),
    Phase("big_put", "POST + PUT with the whole body", "MiB/s"),
    Phase("big_stream", "POST + streamed PATCH + PUT", "MiB/s"),
    Phase("big_chunked", "POST + 16 MiB PATCHes + PUT", "MiB/s"),
)


@dataclass
class Figures:
    rate: list[float] = field(default_factory=list)
    server_cpu_ms: list[float] = field(default_factory=list)  # per blob (small) or per GiB
    p99_ms: list[float] = field(default_factory=list)


@dataclass
class Run:
    figures: dict[str, dict[str, Figures]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    syscalls: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def say(msg: str) -> None:
    print(msg, flush=True)


class BigBlobs:
    """Distinct big blobs (no registry can dedupe one push against another), handed out one
    per push; the bytes each push stored are removed from disk afterwards, so a full run needs
    the space of one blob per registry, not of every push."""

    def __init__(self, work: Path, size: int, count: int) -> None:
        source = work / "source.bin"
        say(f"preparing a {size // MiB} MiB random blob in {work} ...")
        write_random_file(source, size)
        self._blobs = list(make_blobs(source, size, [f"b{i}" for i in range(count)])[0].values())
        self._work = work

    def take(self) -> BlobSource:
        return self._blobs.pop()

    def forget(self, blob: BlobSource) -> None:
        encoded = blob.digest.split(":", 1)[1]
        shard = f"sha256/{encoded[:2]}/{encoded}"
        with contextlib.suppress(FileNotFoundError):
            (self._work / "moorage-data" / "blobs" / shard).unlink()
        dist = self._work / "distribution-root" / "docker/registry/v2/blobs" / shard
        shutil.rmtree(dist, ignore_errors=True)


def small_push(
    server: servers.ManagedServer, phase: str, seconds: float
) -> tuple[float, float, float]:
    """(blobs/s, p99 ms, server CPU ms per blob) of `seconds` of 4 KiB pushes at c16."""
    cpu = server.cpu_probe()
    cpu0 = cpu()
    result = rawaio.small_blob_push(
        "127.0.0.1",
        server.port,
        f"{REPO}/{phase}",
        concurrency=CONCURRENCY,
        seconds=seconds,
        max_blobs=10**9,
        blob_size=SMALL,
        single_post=False,
        patch=phase == "small_patch",
    )
    used = cpu() - cpu0
    if result.errors or not result.count:
        raise RuntimeError(f"{server.name} {phase}: {result.errors[:3]}")
    latencies = sorted(result.latencies_s)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return result.count / result.seconds, p99 * 1000, used / result.count * 1000


def big_push(
    server: servers.ManagedServer,
    phase: str,
    blob: BlobSource,
    chunk: int,
    counters: list[dict[str, Any]] | None = None,
    warm: Path | None = None,
) -> tuple[float, float]:
    """(MiB/s, server CPU s per GiB) of one push of `blob` the way `phase` says. With
    ``counters``, the kernel's counters over the push (bench/counters.py) are appended to it
    and printed on one line. With ``warm`` (a directory on the stores' filesystem), a scratch
    file of the blob's size is written and deleted there just before the push
    (page_touch.hand_back_warm), so that neither registry writes into memory the VM took back."""
    registry = Registry(server.url)
    repo = f"{REPO}/{phase}"
    push: Callable[[], None] = {
        "big_put": lambda: registry.push_monolithic(repo, blob, single_post=False),
        "big_stream": lambda: registry.push_streamed(repo, blob),
        "big_chunked": lambda: registry.push_chunked(repo, blob, chunk),
    }[phase]
    os.sync()  # no earlier push's writeback in this one's time
    if warm is not None:
        hand_back_warm(warm, blob.size)
    cpu = server.cpu_probe()
    cpu0 = cpu()
    counted = Counters(server.pids) if counters is not None else None
    with counted or contextlib.nullcontext():
        t0 = time.perf_counter()
        push()
        seconds = time.perf_counter() - t0
    used = cpu() - cpu0
    rate = blob.size / MiB / seconds
    if counters is not None and counted is not None:
        counters.append({"server": server.name, "phase": phase, "mib_s": rate,
                         "cpu_s": used, **counted.result})  # fmt: skip
        say(f"    {server.name} {phase} {rate:.0f} MiB/s, CPU {used:.2f} s: "
            + summary(counted.result))  # fmt: skip
    if registry.blob_size(repo, blob.digest) != blob.size:
        raise RuntimeError(f"{server.name} {phase}: the pushed blob is not there")
    return rate, used / (blob.size / GiB)


def measure(
    pair: tuple[servers.ManagedServer, servers.ManagedServer],
    phases: list[Phase],
    rounds: int,
    seconds: float,
    big: BigBlobs | None,
    chunk: int,
    counters: list[dict[str, Any]] | None = None,
    warm: Path | None = None,
) -> Run:
    run = Run()
    for phase in phases:
        run.figures[phase.key] = {s.name: Figures() for s in pair}
        run.ratios[phase.key] = []
    for phase in phases:  # warm-up: connections, worker start-up, first-repository rows
        if phase.unit == "blobs/s":
            for server in pair:
                small_push(server, phase.key, min(1.0, seconds))
    for r in range(rounds):
        order = pair if r % 2 == 0 else pair[::-1]
        line = []
        for phase in phases:
            rates = {}
            for server in order:
                f = run.figures[phase.key][server.name]
                if phase.unit == "blobs/s":
                    rate, p99, cpu_ms = small_push(server, phase.key, seconds)
                    f.p99_ms.append(p99)
                else:
                    assert big is not None
                    blob = big.take()
                    rate, cpu_s = big_push(server, phase.key, blob, chunk, counters, warm)
                    big.forget(blob)
                    cpu_ms = cpu_s * 1000
                f.rate.append(rate)
                f.server_cpu_ms.append(cpu_ms)
                rates[server.name] = rate
            ratio = rates[pair[0].name] / rates[pair[1].name]
            run.ratios[phase.key].append(ratio)
            line.append(f"{phase.key} {ratio:.2f}x")
        say(f"  round {r + 1}/{rounds} ({order[0].name} first): " + ", ".join(line))
    return run


def count_syscalls(
    server: servers.ManagedServer, phase: str, pushes: int, trace: str | None = SYNC_CALLS
) -> dict[str, float]:
    """System calls per 4 KiB push (those named in ``trace``, by default the fsync family and
    renames; every one with None), from `strace -f -c` attached to every process of the
    server while `pushes` blobs are pushed (strace slows it: counts only)."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        argv = ["strace", "-f", "-c", "-o", out.name]
        if trace is not None:
            argv[3:3] = ["-e", f"trace={trace}"]
        for pid in server.pids():
            argv += ["-p", str(pid)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # attached to every thread
            result = rawaio.small_blob_push(
                "127.0.0.1",
                server.port,
                f"{REPO}/{phase}-strace",
                concurrency=CONCURRENCY,
                seconds=600,
                max_blobs=pushes,
                blob_size=SMALL,
                single_post=False,
                patch=phase == "small_patch",
            )
            time.sleep(0.3)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=60)
        counts = parse_strace_summary(Path(out.name).read_text())
    return {name: n / result.count for name, n in sorted(counts.items())}


def print_table(phases: list[Phase], run: Run, names: tuple[str, str], big_mib: int) -> None:
    headers = ["push", "unit", *(f"{n} median" for n in names),
               *(f"{n} min-max" for n in names), "ratio median", "ratio min-max",
               "server CPU (ms/blob, ms/GiB)"]  # fmt: skip
    rows = []
    for phase in phases:
        figs = [run.figures[phase.key][n] for n in names]
        label = phase.label if phase.unit == "blobs/s" else f"{big_mib} MiB: {phase.label}"
        rows.append(
            [
                label,
                phase.unit,
                *(median_text(f.rate) for f in figs),
                *(spread_text(f.rate) for f in figs),
                median_text(run.ratios[phase.key], 2) + "x",
                spread_text(run.ratios[phase.key], 2),
                " / ".join(median_text(f.server_cpu_ms, 1) for f in figs),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    say(line.format(*headers))
    say("  ".join("-" * w for w in widths))
    for row in rows:
        say(line.format(*row))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size-mib", type=int, help="big blob size (default 1024; --quick: 64)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="PATCH size of big_chunked")
    ap.add_argument("--rounds", type=int, help="alternated rounds (default 5; --quick: 2)")
    ap.add_argument("--seconds", type=float, help="each 4 KiB run (default 8; --quick: 2)")
    ap.add_argument("--phases", default=",".join(p.key for p in PHASES))
    ap.add_argument("--workers", type=int, default=2, help="moorage serve --workers (default 2)")
    ap.add_argument("--quick", action="store_true", help="smaller defaults, for a smoke test")
    ap.add_argument("--syscalls", action="store_true", help="count fsyncs per 4 KiB push")
    ap.add_argument("--moorage-bin", default=default_moorage_bin())
    ap.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    ap.add_argument("--counters", action="store_true",
                    help="record kernel counters per big push (bench/counters.py)")  # fmt: skip
    ap.add_argument("--warm-pages", action="store_true",
                    help="write and delete a scratch file of the blob's size before each big "
                    "push (the VM's free page reporting: bench/page_touch.py)")  # fmt: skip
    ap.add_argument("--json", dest="json_out", type=Path, help="write every figure as JSON")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    defaults = (64, 2, 2.0) if args.quick else (1024, 5, 8.0)
    for name, default in zip(("size_mib", "rounds", "seconds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = args.phases.split(",")
    unknown = set(keys) - {p.key for p in PHASES}
    if unknown:
        say(f"unknown phases: {', '.join(sorted(unknown))}")
        return 2
    phases = [p for p in PHASES if p.key in keys]
    for tool in (args.distribution_bin, args.moorage_bin, *(["strace"] if args.syscalls else [])):
        if shutil.which(tool) is None:
            say(f"missing: {tool}")
            return 2
    command = shlex.join([sys.executable, *sys.argv])
    started_at = dt.datetime.now(dt.UTC)
    busy = other_cpu_busy()
    say(f"command: {command}")
    say(
        f"started: {started_at.isoformat(timespec='seconds')}  host: {platform.node()}  "
        f"cpus: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}  "
        f"CPU busy with other work: {busy:.0%}"
    )
    if busy > 0.15:
        say("warning: the machine is busy with other work; speeds are indications only")
    work = Path(tempfile.mkdtemp(prefix="moorage-push-", dir=args.work_dir))
    syscalls: dict[str, dict[str, dict[str, float]]] = {}
    counters: list[dict[str, Any]] | None = [] if args.counters else None
    try:
        with contextlib.ExitStack() as stack:
            big_phases = [p for p in phases if p.unit == "MiB/s"]
            big = (
                BigBlobs(work, args.size_mib * MiB, 2 * args.rounds * len(big_phases))
                if big_phases
                else None
            )
            moorage = servers.moorage_server(args.moorage_bin, work, args.workers)
            dist = servers.distribution_server(args.distribution_bin, work)
            for server in (moorage, dist):
                say(f"starting {server.name}: {shlex.join(server.argv)}")
                stack.enter_context(server)
            say(f"\n{args.rounds} alternated rounds; ratio = moorage / distribution:")
            run = measure(
                (moorage, dist),
                phases,
                args.rounds,
                args.seconds,
                big,
                args.chunk_mib * MiB,
                counters,
                work if args.warm_pages else None,
            )
            if args.syscalls:
                for phase in phases:
                    if phase.unit == "blobs/s":
                        syscalls[phase.key] = {
                            s.name: count_syscalls(s, phase.key, 400) for s in (moorage, dist)
                        }
            run.syscalls = syscalls
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    say(f"\n== push, {args.rounds} alternated rounds; {command}")
    say(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f},"
        f" CPU busy with other work at the start: {busy:.0%}\n"
    )
    print_table(phases, run, ("moorage", "distribution"), args.size_mib)
    say(
        "\nratio: each round's Moorage figure divided by distribution's in the same round "
        "(> 1: Moorage is faster). Server CPU: every process of the server, ms per 4 KiB blob "
        "or per GiB. Speeds count only on an idle machine."
    )
    for key, per_server in syscalls.items():
        say(f"\nsyscalls per {key} push (strace -f -c -e trace={SYNC_CALLS}):")
        for name, counts in per_server.items():
            say(f"  {name}: " + (", ".join(f"{k} {v:.2f}" for k, v in counts.items()) or "none"))
    if args.json_out:
        out: dict[str, Any] = {
            "command": command,
            "started": started_at.isoformat(timespec="seconds"),
            "machine": {
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "busy_at_start": busy,
                "load_average": load,
            },
            "size_mib": args.size_mib,
            "rounds": args.rounds,
            "workers": args.workers,
            "phases": {
                p.key: {
                    "label": p.label,
                    "unit": p.unit,
                    "ratio": run.ratios[p.key],
                    **{n: asdict(f) for n, f in run.figures[p.key].items()},
                }
                for p in phases
            },
            "syscalls": syscalls,
            "counters": counters,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")
        say(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
