#!/usr/bin/env python3
"""Manifest GET and blob HEAD at concurrency 64: Moorage, distribution 2.8 and a bare granian
"hello" app (the framework's ceiling), in alternated rounds.

    .venv/bin/python bench/ceiling.py                      # moorage's default workers, 5 rounds
    .venv/bin/python bench/ceiling.py --workers 1,2        # one Moorage and one hello per count
    .venv/bin/python bench/ceiling.py --quick              # 2 rounds of 2 s, about 40 s

Every server runs for the whole measurement (an idle server costs nothing), so each round can
measure all of them one after the other, in an order that rotates every round: a burst of load
from elsewhere on the machine then spreads over all of them instead of landing on one. The
commands are run.py's: `wrk -t2 -c64 --latency` with the OCI manifest Accept header, and
`ab -k -i -c 64` for HEAD (wrk cannot do HEAD). The hello app answers "hello" to any path, under
the very granian options `moorage serve` uses (moorage.cli.main.granian_server). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import loadgen
import servers
from moorage.cpus import auto_workers
from ociclient import OCI_MANIFEST, Registry, make_image
from report import Machine, median_text, print_table, ratio_text, say, spread_text, write_json
from run import default_moorage_bin, push_image

KINDS = ("manifest", "head")
KIND_LABEL = {"manifest": "manifest GET (wrk)", "head": "blob HEAD (ab)"}
REPO = "bench/ceiling"


@dataclass(frozen=True)
class Target:
    """One server and the URLs each kind of request goes to."""

    key: str
    kind_of_server: str  # "moorage", "distribution" or "hello"
    workers: int | None  # None for distribution
    server: servers.ManagedServer
    urls: dict[str, str]


@dataclass
class Figures:
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us_per_req: list[float] = field(default_factory=list)
    vs_distribution: list[float] = field(default_factory=list)
    vs_hello: list[float] = field(default_factory=list)


def load(target: Target, kind: str, seconds: int) -> loadgen.LoadResult:
    url = target.urls[kind]
    if kind == "manifest":
        return loadgen.run_wrk(url, seconds=seconds, headers={"Accept": OCI_MANIFEST})
    return loadgen.run_ab_head(url, seconds=seconds)


def checked(res: loadgen.LoadResult, what: str) -> loadgen.LoadResult:
    if res.requests == 0 or res.non_2xx > res.requests // 100:
        raise RuntimeError(f"{what}: {res.non_2xx} of {res.requests} requests failed")
    return res


def measure(
    targets: list[Target], rounds: int, seconds: int, warmup: int
) -> dict[tuple[str, str], Figures]:
    figures = {(t.key, kind): Figures() for t in targets for kind in KINDS}
    for t in targets:  # warm-up: connections, worker caches, the page cache; not counted
        for kind in KINDS:
            checked(load(t, kind, warmup), f"{t.key} {kind} warm-up")
    for r in range(rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        rps: dict[tuple[str, str], float] = {}
        for t in order:
            for kind in KINDS:
                probe = t.server.cpu_probe()
                c0 = probe()
                res = checked(load(t, kind, seconds), f"{t.key} {kind}")
                used = probe() - c0
                f = figures[(t.key, kind)]
                f.rps.append(res.requests_per_s)
                f.p50_ms.append(res.p50_ms)
                f.p99_ms.append(res.p99_ms)
                f.cpu_us_per_req.append(used * 1e6 / res.requests)
                rps[(t.key, kind)] = res.requests_per_s
        for t in targets:
            for kind in KINDS:
                mine = rps[(t.key, kind)]
                f = figures[(t.key, kind)]
                f.vs_distribution.append(mine / rps[("distribution", kind)])
                hello = f"hello-w{t.workers}"
                if (hello, kind) in rps:
                    f.vs_hello.append(mine / rps[(hello, kind)])
        say(
            f"  round {r + 1}/{rounds}: "
            + "; ".join(
                f"{t.key} " + "/".join(f"{rps[(t.key, k)]:,.0f}" for k in KINDS) for t in targets
            )
            + " req/s (manifest/HEAD)"
        )
    return figures


def print_figures(targets: list[Target], figures: dict[tuple[str, str], Figures]) -> None:
    headers = [
        "request",
        "server",
        "req/s median",
        "min-max",
        "p99 ms",
        "CPU us/req",
        "vs distribution",
        "vs hello (same workers)",
    ]
    rows = []
    for kind in KINDS:
        for t in targets:
            f = figures[(t.key, kind)]
            rows.append(
                [
                    KIND_LABEL[kind],
                    t.key,
                    median_text(f.rps),
                    spread_text(f.rps),
                    median_text(f.p99_ms, 1),
                    median_text(f.cpu_us_per_req),
                    ratio_text(f.vs_distribution) if t.kind_of_server != "distribution" else "",
                    ratio_text(f.vs_hello) if t.kind_of_server == "moorage" else "",
                ]
            )
    print_table(headers, rows, left=2)


def rss_mib(server: servers.ManagedServer) -> float:
    assert server.proc is not None
    return servers.group_rss_mib(server.proc.pid)  # its group id: started in a new session


def parse_workers(text: str) -> list[int | None]:
    """ "1,2" -> [1, 2]; "default" -> [None] (moorage serve without --workers)."""
    if text == "default":
        return [None]
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--workers",
        type=parse_workers,
        default=[None],
        help="comma-separated worker counts, one Moorage and one hello app each "
        "(default: moorage serve's own default, and as many hello workers)",
    )
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    ap.add_argument("--seconds", type=int, default=8, help="each load run (default 8)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s (smoke)")
    ap.add_argument("--moorage-bin", default=default_moorage_bin())
    ap.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    ap.add_argument("--json", dest="json_out", type=Path, help="write every figure as JSON")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 2, 2
    return args


def start_targets(
    stack: contextlib.ExitStack, args: argparse.Namespace, work: Path
) -> list[Target]:
    """Start distribution, one Moorage and one hello app per worker count; push the small image
    to each registry."""
    image = make_image(os.urandom(64 * 1024))
    dist = servers.distribution_server(args.distribution_bin, work)
    registries: list[tuple[str, int | None, servers.ManagedServer]] = [("distribution", None, dist)]
    hellos = []
    for workers in args.workers:
        n = workers if workers is not None else auto_workers()
        name = f"moorage-w{n}" + ("-default" if workers is None else "")
        moorage = servers.moorage_server(args.moorage_bin, work / name, workers, name=name)
        registries.append((name, n, moorage))
        hellos.append((f"hello-w{n}", n, servers.hello_server(work, n)))
    targets = []
    for key, n, server in registries:
        say(f"starting {key}: {shlex.join(server.argv)}")
        stack.enter_context(server)
        push_image(Registry(server.url), REPO, image, "v1", None)
        base = f"{server.url}/v2/{REPO}"
        urls = {"manifest": f"{base}/manifests/v1", "head": f"{base}/blobs/{image.layer_digest}"}
        kind = "distribution" if n is None else "moorage"
        targets.append(Target(key, kind, n, server, urls))
    for key, n, server in hellos:
        say(f"starting {key}: {shlex.join(server.argv)}")
        stack.enter_context(server)
        urls = {kind: f"{server.url}/hello" for kind in KINDS}
        targets.append(Target(key, "hello", n, server, urls))
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "ab", args.distribution_bin, args.moorage_bin):
        if shutil.which(tool) is None:
            say(f"missing: {tool}")
            return 2
    machine = Machine()
    machine.print_start()
    work = Path(tempfile.mkdtemp(prefix="moorage-ceiling-", dir=args.work_dir))
    try:
        with contextlib.ExitStack() as stack:
            targets = start_targets(stack, args, work)
            say(f"\n{args.rounds} alternated rounds of {args.seconds} s per server and request:")
            figures = measure(targets, args.rounds, args.seconds, warmup=2)
            rss = {t.key: rss_mib(t.server) for t in targets}
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    say(f"\n== manifest GET and blob HEAD, c64, {args.rounds} alternated rounds; {machine.command}")
    say(machine.finish() + "\n")
    print_figures(targets, figures)
    say(
        "\nmedian and min-max over the rounds; ratios are per round (req/s over req/s of the "
        "same round), median (min-max). p99 is wrk's for GET and ab's (whole ms) for HEAD. "
        "CPU: all processes of the server, from /proc (10 ms ticks)."
    )
    say(
        "resident memory after the run (MiB, all processes of each server): "
        + ", ".join(f"{key} {mib:,.0f}" for key, mib in rss.items())
    )
    write_json(
        args.json_out,
        {
            "machine": asdict(machine),
            "rounds": args.rounds,
            "seconds": args.seconds,
            "rss_mib": rss,
            "figures": {f"{key} {kind}": asdict(f) for (key, kind), f in figures.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
