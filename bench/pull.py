#!/usr/bin/env python3
"""Pull one big blob with curl from every server that can send it, alternated over rounds.

    .venv/bin/python bench/pull.py                       # 1 GiB, 7 rounds, moorage --workers 2
    .venv/bin/python bench/pull.py --size-mib 256 --rounds 3 --syscalls
    .venv/bin/python bench/pull.py --parallel 6          # 6 curls at once, 6 blobs of 170 MiB

The same bytes are served by: `moorage serve` itself (streamed from Python), Moorage behind
nginx with storage.accel_redirect (Moorage authorizes, nginx sends the file with sendfile),
nginx with sendfile serving Moorage's blob file as a static file (the machine's ceiling for one
download), and Debian's docker-registry (distribution 2.8); then the second half of the blob as a
Range request from Moorage and from nginx. Each round pulls once from each, in an order that
rotates every round; the table gives medians and spread over the rounds, the median of each
round's ratio to nginx in the same round, and the CPU seconds per GiB of the servers and of curl.

With --parallel N, N different blobs of size/N each are pulled by N concurrent curls from
Moorage, nginx and distribution instead (MiB/s of all bytes from the first start to the last
end). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import report
import servers
from ociclient import BlobSource, Registry
from refspeed import make_blobs, write_random_file
from report import median_text, spread_text
from run import default_moorage_bin, other_cpu_busy

MiB = 1 << 20
GiB = 1 << 30
REPO = "bench/pull"
ACCEL_PREFIX = "/_moorage_blobs/"
# The internal location of docs/deploy/nginx.conf (its accel_redirect block), on plain HTTP so
# that TLS does not hide what is measured: Moorage authorizes, nginx sends the file.
ACCEL_SERVER = """
    upstream moorage_accel {{ server 127.0.0.1:{moorage_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Sendfile-Type X-Accel-Redirect;
        proxy_buffering off;
        location /v2/ {{ proxy_pass http://moorage_accel; }}
        location {prefix} {{
            internal;
            alias {blobs}/;
            sendfile on;
            tcp_nopush on;
            max_ranges 1;
            etag off;
            add_header Docker-Content-Digest $upstream_http_docker_content_digest;
            add_header ETag $upstream_http_etag;
        }}
    }}
"""
# nginx sending the very file Moorage serves, as a static file: what sendfile reaches.
STATIC_SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location /blobs/ {{ alias {blobs}/; sendfile on; tcp_nopush on; }}
        location = /v2/ {{ return 200; }}
    }}
"""


@dataclass(frozen=True)
class Target:
    """One way of pulling the blob: a URL (and Range), and the servers whose CPU it costs."""

    key: str
    label: str
    url: str
    reference: str  # the key of the nginx target this one is compared with in each round
    servers: tuple[servers.ManagedServer, ...]
    first: int = 0  # a Range request for bytes first..end when > 0

    def cpu_seconds(self) -> float:
        return sum(s.cpu_probe()() for s in self.servers)

    def pull(self, size: int) -> tuple[int, float, float]:
        """(bytes, seconds, curl CPU seconds) of one pull of a blob of ``size`` bytes."""
        expected = size - self.first
        return (expected, *curl(self.url, self.first, expected))


@dataclass(frozen=True)
class ParallelTarget:
    """N different blobs pulled at once from one server (all of them in the CPU figure)."""

    key: str
    label: str
    urls: list[str]
    servers: tuple[servers.ManagedServer, ...]
    reference: str = "nginx"

    def cpu_seconds(self) -> float:
        return sum(s.cpu_probe()() for s in self.servers)

    def pull(self, size: int) -> tuple[int, float, float]:
        """(bytes, seconds, CPU seconds of all the curls) of ``size`` bytes from each URL."""
        return (size * len(self.urls), *curls(self.urls, size))


@dataclass
class Figures:
    mib_s: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    server_cpu_s_per_gib: list[float] = field(default_factory=list)
    client_cpu_s_per_gib: list[float] = field(default_factory=list)
    # Server and curl together: on loopback the kernel's receive work runs in whichever of the
    # two is on the CPU (softirq), so only the sum compares fairly between servers.
    total_cpu_s_per_gib: list[float] = field(default_factory=list)
    syscalls: dict[str, int] = field(default_factory=dict)


def say(msg: str) -> None:
    print(msg, flush=True)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def curl(url: str, first: int, expected: int) -> tuple[float, float]:
    """GET url (bytes first- when first > 0) into /dev/null; (seconds, curl's CPU seconds)."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
    if first:
        argv += ["-H", f"Range: bytes={first}-"]
    before = children_cpu_seconds()
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    seconds = time.perf_counter() - t0
    used = children_cpu_seconds() - before
    status, size = [*out.stdout.split(), "?", "?"][:2]
    want = "206" if first else "200"
    if out.returncode != 0 or status != want or size != str(expected):
        raise RuntimeError(
            f"curl {url}: exit {out.returncode}, status {status} (want {want}), "
            f"{size} bytes (want {expected}) {out.stderr.strip()}"
        )
    return seconds, used


def curls(urls: list[str], expected: int) -> tuple[float, float]:
    """GET every URL at once, each with its own curl, into /dev/null; (seconds from the first
    start to the last end, the curls' CPU seconds)."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"]
    before = children_cpu_seconds()
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for url in urls
    ]
    outs = [(proc, *proc.communicate(timeout=600)) for proc in procs]
    seconds = time.perf_counter() - t0
    used = children_cpu_seconds() - before
    for (proc, out, err), url in zip(outs, urls, strict=True):
        if proc.returncode != 0 or out.split() != ["200", str(expected)]:
            raise RuntimeError(f"curl {url}: exit {proc.returncode}, {out!r} {err.strip()}")
    return seconds, used


def syscall_counts(target: Target, expected: int) -> dict[str, int]:
    """Syscalls made by the target's servers during one pull, from `strace -f -c` (which slows
    them down: counts only, never a speed)."""
    pids = [pid for s in target.servers for pid in s.pids()]
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        argv = ["strace", "-f", "-c", "-o", out.name]
        for pid in pids:
            argv += ["-p", str(pid)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # attached to every thread
            curl(target.url, target.first, expected)
            time.sleep(0.3)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
        return parse_strace_summary(Path(out.name).read_text())


def parse_strace_summary(text: str) -> dict[str, int]:
    """{syscall: calls} from the table `strace -c` prints (columns: % time, seconds,
    usecs/call, calls, [errors,] syscall; the errors column may be empty)."""
    counts = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0][0].isdigit() and cols[3].isdigit() and cols[-1] != "total":
            counts[cols[-1]] = int(cols[3])
    return counts


def check_accel(server: servers.ManagedServer, path: str) -> None:
    """The accel instance must answer what nginx passes on with a redirect, or the row would
    measure Moorage's bytes proxied through nginx."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path, headers={"X-Sendfile-Type": "X-Accel-Redirect"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    target = resp.getheader("X-Accel-Redirect")
    if resp.status != 200 or body or not target or not target.startswith(ACCEL_PREFIX):
        raise RuntimeError(f"{server.name} did not answer with X-Accel-Redirect: {resp.status}")


def push(url: str, blob: BlobSource) -> None:
    registry = Registry(url)
    registry.push_monolithic(REPO, blob, registry.supports_single_post(f"{REPO}-probe"))
    if registry.blob_size(REPO, blob.digest) != blob.size:
        raise RuntimeError(f"{url}: the pushed blob is not there")


def print_table(targets: Sequence[Target | ParallelTarget], figures: dict[str, Figures]) -> None:
    headers = [
        "pull",
        "MiB/s median",
        "min-max",
        "vs nginx (median)",
        "min-max",
        "server CPU s/GiB",
        "curl CPU s/GiB",
        "both",
    ]
    rows = []
    for t in targets:
        f = figures[t.key]
        rows.append(
            [
                t.label,
                median_text(f.mib_s),
                spread_text(f.mib_s),
                median_text(f.ratio, 2) + "x" if f.ratio else "-",
                spread_text(f.ratio, 2),
                median_text(f.server_cpu_s_per_gib, 2),
                median_text(f.client_cpu_s_per_gib, 2),
                median_text(f.total_cpu_s_per_gib, 2),
            ]
        )
    report.print_table(headers, rows)


def print_syscalls(targets: list[Target], figures: dict[str, Figures], size: int) -> None:
    say("\nserver syscalls per GiB sent, counted during one pull of each (strace -f -c):")
    for t in targets:
        counts = figures[t.key].syscalls
        if not counts:
            continue
        per_gib = GiB / (size - t.first)
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
        say(
            f"  {t.label}: {sum(counts.values()) * per_gib:,.0f} in all; "
            + ", ".join(f"{name} {n * per_gib:,.0f}" for name, n in top)
        )


def measure(
    targets: Sequence[Target] | Sequence[ParallelTarget], rounds: int, size: int, unit: str
) -> dict[str, Figures]:
    """Alternated rounds of one pull from each target (the first to go moves on each round),
    each compared with its reference's pull in the same round."""
    figures = {t.key: Figures() for t in targets}
    for t in targets:  # warm-up: page cache, connections, worker start-up; not counted
        t.pull(size)
    for r in range(rounds):
        order = [*targets[r % len(targets) :], *targets[: r % len(targets)]]
        speeds = {}
        for t in order:
            os.sync()
            cpu0 = t.cpu_seconds()
            pulled, seconds, client = t.pull(size)
            server = t.cpu_seconds() - cpu0
            speeds[t.key] = pulled / MiB / seconds
            f = figures[t.key]
            f.mib_s.append(speeds[t.key])
            f.server_cpu_s_per_gib.append(server / (pulled / GiB))
            f.client_cpu_s_per_gib.append(client / (pulled / GiB))
            f.total_cpu_s_per_gib.append((server + client) / (pulled / GiB))
        for t in targets:
            figures[t.key].ratio.append(speeds[t.key] / speeds[t.reference])
        say(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(f"{t.key} {speeds[t.key]:,.0f}" for t in targets)
            + f" {unit}"
        )
    return figures


def static_url(port: int, digest: str) -> str:
    """Moorage's file of ``digest`` as nginx's STATIC_SERVER serves it."""
    encoded = digest.split(":", 1)[1]
    return f"http://127.0.0.1:{port}/blobs/sha256/{encoded[:2]}/{encoded}"


def run_parallel(
    args: argparse.Namespace, stack: contextlib.ExitStack, work: Path, command: str, busy: float
) -> int:
    """--parallel N: N different blobs of size/N, each pulled by its own curl at once."""
    n = args.parallel
    blob_size = args.size_mib * MiB // n
    source = work / "source.bin"
    say(f"preparing {n} random blobs of {blob_size / MiB:,.0f} MiB in {work} ...")
    write_random_file(source, blob_size)
    blobs = list(make_blobs(source, blob_size, [f"p{i}" for i in range(n)])[0].values())
    dist = servers.distribution_server(args.distribution_bin, work)
    direct = servers.moorage_server(args.moorage_bin, work, args.workers)
    for server in (dist, direct):
        start(stack, server)
        for blob in blobs:
            push(server.url, blob)
    static_port = servers.free_port()
    blobs_dir = work / "moorage-data" / "blobs"
    nginx = servers.nginx_server(
        work / "nginx", STATIC_SERVER.format(port=static_port, blobs=blobs_dir), static_port
    )
    start(stack, nginx)
    paths = [f"/v2/{REPO}/blobs/{blob.digest}" for blob in blobs]
    targets = [
        ParallelTarget("moorage", f"moorage serve, {n} at once",
                       [direct.url + p for p in paths], (direct,)),
        ParallelTarget("nginx", f"nginx sendfile, {n} at once",
                       [static_url(static_port, blob.digest) for blob in blobs], (nginx,)),
        ParallelTarget("distribution", f"distribution 2.8, {n} at once",
                       [dist.url + p for p in paths], (dist,)),
    ]  # fmt: skip
    say(f"\n{args.rounds} rounds of {n} concurrent pulls from each, alternated:")
    figures = measure(targets, args.rounds, blob_size, "MiB/s in all")
    say(
        f"\n== pull {n} x {blob_size / MiB:,.0f} MiB at once with curl, {args.rounds} "
        f"alternated rounds; {command}"
    )
    say(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"CPU busy with other work at the start: {busy:.0%}\n"
    )
    print_table(targets, figures)
    say(
        "\nMiB/s: all bytes over the time from the first curl's start to the last one's end; "
        "vs nginx: each round's figure over nginx's in the same round. CPU as for one pull."
    )
    if args.json_out:
        report.write_json(
            args.json_out,
            {
                "command": command,
                "machine": {"host": platform.node(), "cpus": os.cpu_count(), "busy_at_start": busy},
                "parallel": n,
                "blob_mib": blob_size / MiB,
                "rounds": args.rounds,
                "workers": args.workers,
                "targets": {t.key: {"label": t.label, **asdict(figures[t.key])} for t in targets},
            },
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size-mib", type=int, default=1024, help="blob size (default 1024)")
    ap.add_argument("--rounds", type=int, default=7, help="alternated rounds (default 7)")
    ap.add_argument("--workers", type=int, default=2, help="moorage serve --workers (default 2)")
    ap.add_argument("--moorage-bin", default=default_moorage_bin())
    ap.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    ap.add_argument(
        "--parallel",
        type=int,
        default=0,
        metavar="N",
        help="pull N different blobs of size/N at once instead (Moorage, nginx, distribution)",
    )
    ap.add_argument(
        "--syscalls", action="store_true", help="also count each server's syscalls with strace"
    )
    ap.add_argument("--json", dest="json_out", type=Path, help="write every figure as JSON")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return ap.parse_args(argv)


def start(stack: contextlib.ExitStack, server: servers.ManagedServer) -> None:
    """Start ``server``, to be stopped when ``stack`` closes."""
    say(f"starting {server.name}: {shlex.join(server.argv)}")
    stack.enter_context(server)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("curl", servers.NGINX_BIN, args.distribution_bin, args.moorage_bin):
        if shutil.which(tool) is None:
            say(f"missing: {tool}")
            return 2
    if args.syscalls and shutil.which("strace") is None:
        say("missing: strace (needed by --syscalls)")
        return 2
    size = args.size_mib * MiB
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
        say("warning: the machine is busy with other work; speeds are not results (CPU is)")
    work = Path(tempfile.mkdtemp(prefix="moorage-pull-", dir=args.work_dir))
    try:
        with contextlib.ExitStack() as stack:
            if args.parallel:
                return run_parallel(args, stack, work, command, busy)
            source = work / "source.bin"
            say(f"preparing a {args.size_mib} MiB random blob in {work} ...")
            write_random_file(source, size)
            blob = make_blobs(source, size, ["pull"])[0]["pull"]

            dist = servers.distribution_server(args.distribution_bin, work)
            direct = servers.moorage_server(args.moorage_bin, work, args.workers)
            # A second `moorage serve` over the same data: the same blobs, answered with
            # X-Accel-Redirect (an instance with the option on never sends bytes itself).
            accel = servers.moorage_server(
                args.moorage_bin,
                work,
                args.workers,
                name="moorage-accel",
                env={"MOORAGE_STORAGE__ACCEL_REDIRECT": ACCEL_PREFIX},
            )
            for server in (dist, direct):
                start(stack, server)
                push(server.url, blob)
            start(stack, accel)
            blobs_dir = work / "moorage-data" / "blobs"
            accel_port, static_port = servers.free_port(), servers.free_port()
            http_block = ACCEL_SERVER.format(
                moorage_port=accel.port, port=accel_port, prefix=ACCEL_PREFIX, blobs=blobs_dir
            ) + STATIC_SERVER.format(port=static_port, blobs=blobs_dir)
            nginx = servers.nginx_server(work / "nginx", http_block, accel_port)
            start(stack, nginx)

            encoded = blob.digest.split(":", 1)[1]
            path = f"/v2/{REPO}/blobs/{blob.digest}"
            check_accel(accel, path)
            static = f"http://127.0.0.1:{static_port}/blobs/sha256/{encoded[:2]}/{encoded}"
            half = size // 2
            targets = [
                Target("moorage", "moorage serve (streamed)", direct.url + path,
                       "nginx", (direct,)),
                Target("accel", "moorage + nginx X-Accel-Redirect",
                       f"http://127.0.0.1:{accel_port}{path}", "nginx", (accel, nginx)),
                Target("nginx", "nginx sendfile, static file", static, "nginx", (nginx,)),
                Target("distribution", "distribution 2.8", dist.url + path, "nginx", (dist,)),
                Target("moorage_range", "moorage serve, Range 2nd half", direct.url + path,
                       "nginx_range", (direct,), first=half),
                Target("nginx_range", "nginx sendfile, Range 2nd half", static,
                       "nginx_range", (nginx,), first=half),
            ]  # fmt: skip
            say(f"\n{args.rounds} rounds of one {args.size_mib} MiB pull from each, alternated:")
            figures = measure(targets, args.rounds, size, "MiB/s")
            if args.syscalls:
                for t in targets:
                    figures[t.key].syscalls = syscall_counts(t, size - t.first)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    say(f"\n== pull {args.size_mib} MiB with curl, {args.rounds} alternated rounds; {command}")
    say(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"CPU busy with other work at the start: {busy:.0%}\n"
    )
    print_table(targets, figures)
    say(
        "\nvs nginx: each round's MiB/s divided by nginx's sendfile figure in the same round "
        "(Range rows: by nginx's Range figure); > 1 is faster than nginx. Server CPU: all "
        "processes of the servers involved (Moorage + nginx for X-Accel-Redirect), from /proc "
        "(10 ms ticks); both: server + curl (loopback's receive work is charged to either). "
        "Speeds count only on an idle machine; CPU per GiB holds better on a busy one."
    )
    if args.syscalls:
        print_syscalls(targets, figures, size)
    if args.json_out:
        out: dict[str, Any] = {
            "command": command,
            "started": started_at.isoformat(timespec="seconds"),
            "machine": {"host": platform.node(), "cpus": os.cpu_count(), "busy_at_start": busy},
            "size_mib": args.size_mib,
            "rounds": args.rounds,
            "workers": args.workers,
            "targets": {t.key: {"label": t.label, **asdict(figures[t.key])} for t in targets},
        }
        report.write_json(args.json_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
